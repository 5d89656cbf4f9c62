//! Web Locks, as the election and the tab-alive signal use them.

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::AbortController;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks.request(name, options, callback)`.
    #[wasm_bindgen(js_namespace = ["navigator", "locks"], js_name = request)]
    fn request_lock(name: &str, options: &JsValue, callback: &Function) -> Promise;
}

/// A lock request: held from when `on_grant` runs until [`Held::release`].
pub struct Held {
    release: Function,
    abort: Option<AbortController>,
}

impl Held {
    /// A lock requested by JavaScript (index.js), released by calling `release`.
    pub fn from_release(release: Function) -> Self {
        Held {
            release,
            abort: None,
        }
    }

    /// Releases the lock, or withdraws the request if not granted yet.
    pub fn release(&self) {
        let _ = self.release.call0(&JsValue::UNDEFINED);
        if let Some(abort) = &self.abort {
            abort.abort();
        }
    }
}

/// Requests the exclusive lock `name`; `on_grant` runs once it is granted
/// (at once if free, else when every earlier holder and waiter is done).
pub fn hold(name: &str, on_grant: impl FnOnce() + 'static) -> Result<Held, JsValue> {
    let mut release = None;
    // The lock stays held until this promise settles.
    let held = Promise::new(&mut |resolve, _| release = Some(resolve));
    let release = release.ok_or_else(|| JsValue::from_str("Promise executor did not run"))?;
    let abort = AbortController::new().ok();
    let options = Object::new();
    if let Some(abort) = &abort {
        Reflect::set(&options, &"signal".into(), &abort.signal())?;
    }
    let callback = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
        on_grant();
        held.into()
    });
    let request = request_lock(name, &options, callback.unchecked_ref());
    // An aborted request rejects with AbortError: expected, not an error.
    // (Freed when called; one per lock request, which are few.)
    let ignore = Closure::once_into_js(|_: JsValue| {});
    if let Ok(catch) =
        Reflect::get(&request, &"catch".into()).and_then(|f| f.dyn_into::<Function>())
    {
        let _ = catch.call1(&request, &ignore);
    }
    Ok(Held { release, abort })
}
