// serve.mjs starts the fauxqs SQS emulator for TasQ's SQS adapter tests,
// listening on 127.0.0.1 only (fauxqs's own CLI listens on every interface).
//
//   FAUXQS_PORT=9324 node serve.mjs     # a chosen port
//   node serve.mjs                      # a free port, chosen by the OS
//
// It prints one line, "fauxqs listening on http://127.0.0.1:PORT", once it
// accepts connections, and stops on SIGTERM or SIGINT. With
// TASQ_EXIT_WITH_PARENT=1 it also stops when its standard input closes, so a
// test binary that dies without cleaning up does not leave it running.
import { buildApp } from "fauxqs";

const port = Number.parseInt(process.env.FAUXQS_PORT ?? "0", 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`serve.mjs: FAUXQS_PORT=${process.env.FAUXQS_PORT} is not a port number`);
  process.exit(2);
}
const app = buildApp({ logger: process.env.FAUXQS_LOGGER === "true" });
const address = await app.listen({ port, host: "127.0.0.1" });
console.log(`fauxqs listening on ${address}`);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
if (process.env.TASQ_EXIT_WITH_PARENT === "1") {
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}
