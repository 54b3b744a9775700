// The node peers of benches/peers (README.md): one process, one room, the peers' schedule.
//   node server.js ws|sio --port P --players N --questions 20 --time-ms 3000 --grace-ms 500 --pause-ms 3000
//                  --start-delay-ms 2000 --sizes q,r,l,res
// It waits for N sockets (Socket.IO: N connected sockets, each joined to room "r"), then at each scheduled
// instant sends the frames due, the same bytes per frame as Ringside's JSON frames of that kind
// (`--sizes`, 0: not sent): a question at t_q; reveal + leaderboard (+ result) at t_q + time + grace.
// Each frame carries its scheduled send time `t` (epoch µs) and question `q`, padded to its size
// (the same body as the floor's, ../src/lib.rs `peer_body`).
//   ws: a string built once per frame, sent with a loop over the clients (the ws README's broadcast).
//   sio: io.to("r").emit("m", object) — the room broadcast; the object is sized so that the WebSocket
//        payload `42["m",{…}]` has the byte size.
import http from "node:http";
import { WebSocketServer } from "ws";
import { Server } from "socket.io";

const mode = process.argv[2];
const opt = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const port = Number(opt("port", 18600));
const players = Number(opt("players", 1000));
const questions = Number(opt("questions", 20));
const timeMs = Number(opt("time-ms", 3000));
const graceMs = Number(opt("grace-ms", 500));
const pauseMs = Number(opt("pause-ms", 3000));
const startDelayMs = Number(opt("start-delay-ms", 2000));
const sizes = opt("sizes", "300,250,900,0").split(",").map(Number);
const KINDS = ["game:question:show", "game:question:reveal", "game:leaderboard", "game:answer:result"];

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

// The body of `size` bytes (ASCII), less `overhead` bytes the transport wraps around it.
function body(event, tUs, q, size, overhead) {
  const head = `{"event":"${event}","t":${tUs},"q":${q},"pad":"`;
  const pad = Math.max(0, size - head.length - 2 - overhead);
  return head + "x".repeat(pad) + '"}';
}

let send; // (kindIndex, tUs, q) => void
let connected = 0;
const server = http.createServer();

if (mode === "ws") {
  const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: true });
  wss.on("connection", (ws) => {
    ws.on("error", () => {});
    connected += 1;
    if (connected === players) start();
  });
  send = (k, tUs, q) => {
    const data = body(KINDS[k], tUs, q, sizes[k], 0);
    for (const c of wss.clients) c.send(data);
  };
} else if (mode === "sio") {
  const io = new Server(server, { transports: ["websocket"], perMessageDeflate: false, serveClient: false });
  io.on("connection", (socket) => {
    socket.join("r");
    connected += 1;
    if (connected === players) start();
  });
  send = (k, tUs, q) => {
    io.to("r").emit("m", JSON.parse(body(KINDS[k], tUs, q, sizes[k], 8)));
  };
} else {
  console.error("mode: ws | sio");
  process.exit(2);
}

let started = false;
function start() {
  if (started) return;
  started = true;
  const t0 = nowUs() + startDelayMs * 1000;
  const period = (timeMs + graceMs + pauseMs) * 1000;
  const events = [];
  for (let q = 0; q < questions; q++) {
    const tq = t0 + q * period;
    events.push([tq, [0], q]);
    events.push([tq + (timeMs + graceMs) * 1000, [1, 2, 3].filter((k) => sizes[k] > 0), q]);
  }
  console.error(`${mode}: ${connected} sockets, first question in ${startDelayMs} ms`);
  let i = 0;
  const tick = () => {
    const [at, kinds, q] = events[i];
    for (const k of kinds) send(k, at, q);
    i += 1;
    if (i < events.length) setTimeout(tick, Math.max(0, (events[i][0] - nowUs()) / 1000));
    else setTimeout(() => process.exit(0), 15000).unref();
  };
  setTimeout(tick, Math.max(0, (events[0][0] - nowUs()) / 1000));
}

server.listen(port, "127.0.0.1", 8192);
process.on("SIGTERM", () => process.exit(0));
