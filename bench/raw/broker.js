// Transport floor for the benchmarks: a SharedWorker that brokers one
// MessageChannel between the first connected page (which owns an echo worker)
// and each later page, like the sqlite-tabs router does.
let owner = null;
self.onconnect = (event) => {
  const port = event.ports[0];
  if (!owner) {
    owner = port;
    port.postMessage('owner');
    return;
  }
  const channel = new MessageChannel();
  owner.postMessage('attach', [channel.port1]);
  port.postMessage('connected', [channel.port2]);
};
