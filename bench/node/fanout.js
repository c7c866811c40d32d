// The peer dingo's fan-out is measured against: one Node.js process with npm's `ws`,
// speaking the subset of dingo's WebSocket protocol that bench/wsload uses (subscribe,
// publish, message pushes) and broadcasting each publish to every subscriber of the
// channel, one ws.send per subscriber, as the design dingo comes from did.
//
//   node fanout.js PORT
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8090);
const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, path: '/v1/ws', perMessageDeflate: false });
const channels = new Map();  // channel -> Set of sockets
const seqs = new Map();

wss.on('connection', (ws) => {
  const mine = new Set();
  ws.on('message', (raw) => {
    let cmd;
    try {
      cmd = JSON.parse(raw);
    } catch (e) {
      ws.send(JSON.stringify({ id: null, ok: false, error: { code: 'bad_request', message: 'bad json' } }));
      return;
    }
    if (cmd.op === 'subscribe') {
      if (!channels.has(cmd.channel)) channels.set(cmd.channel, new Set());
      channels.get(cmd.channel).add(ws);
      mine.add(cmd.channel);
      ws.send(JSON.stringify({ id: cmd.id, ok: true, position: `node.${seqs.get(cmd.channel) || 0}`,
                               recovered: true, messages: [] }));
    } else if (cmd.op === 'publish') {
      const seq = (seqs.get(cmd.channel) || 0) + 1;
      seqs.set(cmd.channel, seq);
      const msg = JSON.stringify({ event: 'message', channel: cmd.channel, position: `node.${seq}`, data: cmd.data });
      const subs = channels.get(cmd.channel);
      if (subs) for (const s of subs) s.send(msg);
      ws.send(JSON.stringify({ id: cmd.id, ok: true, position: `node.${seq}` }));
    } else if (cmd.op === 'ping') {
      ws.send(JSON.stringify({ id: cmd.id, ok: true }));
    }
  });
  ws.on('close', () => {
    for (const c of mine) {
      const subs = channels.get(c);
      if (subs) subs.delete(ws);
    }
  });
});

server.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
