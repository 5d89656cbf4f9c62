// Transport floor for the benchmarks: a dedicated worker that echoes every
// message back, on its own port and on any port handed to it.
const echo = (port) => (event) => port.postMessage(event.data);
self.onmessage = (event) => {
  if (event.data === 'attach') {
    const port = event.ports[0];
    port.onmessage = echo(port);
    return;
  }
  self.postMessage(event.data);
};
