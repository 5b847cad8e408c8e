#!/usr/bin/env node
// One identify to plainflow-relay over its Unix socket and over TCP, with
// Node's http module (socketPath for the socket). A 503 (the relay cannot
// store the call now) is retried after the Retry-After it gave, with the
// same message_id: the relay stores it once.
//
//   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
//   PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 node identify.js [USER_ID]
'use strict';
const http = require('node:http');
const { randomUUID } = require('node:crypto');
const { setTimeout: sleep } = require('node:timers/promises');

const SOCKET = process.env.PLAINFLOW_RELAY_SOCKET || '/run/plainflow-relay/relay.sock';
const URL_ = new URL(process.env.PLAINFLOW_RELAY_URL || 'http://127.0.0.1:8787');

// POSTs `body`; resolves to { status, headers, answer }.
function post(target, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, path, method: 'POST', timeout: 30000,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        try { resolve({ status: res.statusCode, headers: res.headers, answer: JSON.parse(text || '{}') }); }
        catch (e) { reject(e); }
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    req.end(body);
  });
}

async function identify(via, target, userId, traits, attempts = 5) {
  const message = { type: 'identify', user_id: userId, message_id: randomUUID(), traits };
  const body = JSON.stringify(message);
  for (let i = 0; i < attempts; i++) {
    const { status, headers, answer } = await post(target, '/v1/identify', body);
    console.log(via, status, message.message_id);
    if (status === 200 && answer.ok) return answer;
    if (status !== 503) throw new Error(`${via}: refused (${status}): ${(answer.errors || []).join('; ')}`);
    await sleep(1000 * Number(headers['retry-after'] || 5)); // not stored: the same message again, later
  }
  throw new Error(`${via}: still 503 after ${attempts} attempts`);
}

async function main() {
  const userId = process.argv[2] || '97980cfea0067';
  const traits = { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com', plan: 'premium', logins: 5 };
  await identify('unix', { socketPath: SOCKET }, userId, traits);
  await identify('tcp', { host: URL_.hostname, port: URL_.port || 80 }, userId, traits);
}

main().catch((e) => { console.error(`identify failed: ${e.message}`); process.exit(1); });
