//! Names every tab and worker of a database must agree on: its Web Locks and
//! BroadcastChannels, all under `sqlite-tabs:<database>:`. `index.js` builds
//! the leader and tab lock names in JavaScript before the wasm loads; it must
//! stay in step with these.

use crate::ClientId;

/// The Web Lock the leader holds while it owns the database.
pub fn leader_lock(database: &str) -> String {
    format!("sqlite-tabs:{database}:leader")
}

/// The Web Lock the router holds while it runs (tabs watch it to learn when
/// it dies).
pub fn router_lock(database: &str) -> String {
    format!("sqlite-tabs:{database}:router")
}

/// The Web Lock a tab holds while it lives (the router, or the leader's worker
/// without a router, watches it to learn when the tab dies).
pub fn tab_lock(database: &str, client: ClientId) -> String {
    format!("sqlite-tabs:{database}:tab:{}", client.0)
}

/// The BroadcastChannel carrying the change events of commits.
pub fn changes_channel(database: &str) -> String {
    format!("sqlite-tabs:{database}:changes")
}

/// The BroadcastChannel of requests when there is no router (fallback mode).
pub fn requests_channel(database: &str) -> String {
    format!("sqlite-tabs:{database}:requests")
}

/// The BroadcastChannel of replies when there is no router (fallback mode).
pub fn replies_channel(database: &str) -> String {
    format!("sqlite-tabs:{database}:replies")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_its_own_and_the_database_s() {
        let names = |db: &str| {
            vec![
                leader_lock(db),
                router_lock(db),
                tab_lock(db, ClientId(1)),
                tab_lock(db, ClientId(2)),
                changes_channel(db),
                requests_channel(db),
                replies_channel(db),
            ]
        };
        let mut all = [names("a.db"), names("b.db")].concat();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
        assert!(names("a.db")
            .iter()
            .all(|n| n.starts_with("sqlite-tabs:a.db:")));
    }

    #[test]
    fn a_tab_lock_carries_the_client_id_in_decimal_as_index_js_writes_it() {
        // index.js: `sqlite-tabs:${name}:tab:${client}` with a 53-bit number.
        assert_eq!(
            tab_lock("app.db", ClientId((1 << 53) - 1)),
            "sqlite-tabs:app.db:tab:9007199254740991"
        );
    }
}
