// Socket.IO echo throughput: N raw WebSocket clients connect to /socket.io/ on the conformance server,
// answer pings, and keep WINDOW `message` events in flight each; the server answers every one with
// `message-back`. Prints echoes per second (a round trip: one inbound and one outbound Socket.IO packet).
//
//   NODE_PATH=<dir holding node_modules/ws> node Benchmarks/socketio-echo/load.mjs http://127.0.0.1:3000 [clients] [window] [seconds]
//
// `ws` comes from a local git copy of websockets/ws, e.g.
//   mkdir -p /tmp/ws/node_modules/ws && git -C <mirror>/websockets+ws/repo archive HEAD | tar -x -C /tmp/ws/node_modules/ws
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH ? process.env.NODE_PATH + "/" : import.meta.url);
const { WebSocket } = require("ws");

const url = (process.argv[2] || "http://127.0.0.1:3000").replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
const clients = Number(process.argv[3] || 50);
const windowSize = Number(process.argv[4] || 20);
const seconds = Number(process.argv[5] || 5);
const payload = '42["message",{"text":"hello from the load test","n":1}]';

let echoes = 0;
let measuring = false;
const sockets = [];

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    let state = "engine";
    ws.on("error", reject);
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? "" : data.toString();
      if (text === "2") return ws.send("3");
      if (state === "engine") {
        state = "connect";
        return ws.send("40");
      }
      if (state === "connect") {
        if (text.startsWith("40")) state = "auth";
        return;
      }
      if (state === "auth") {
        state = "run";
        sockets.push(ws);
        return resolve(ws);
      }
      if (text.startsWith('42["message-back"')) {
        if (measuring) echoes++;
        ws.send(payload);
      }
    });
  });
}

await Promise.all(Array.from({ length: clients }, open));
for (const ws of sockets) for (let i = 0; i < windowSize; i++) ws.send(payload);
await new Promise((r) => setTimeout(r, 1000)); // warm-up
measuring = true;
const start = process.hrtime.bigint();
await new Promise((r) => setTimeout(r, seconds * 1000));
measuring = false;
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`clients=${clients} window=${windowSize} seconds=${elapsed.toFixed(2)} echoes=${echoes} echoes/s=${Math.round(echoes / elapsed)}`);
for (const ws of sockets) ws.terminate();
process.exit(0);
