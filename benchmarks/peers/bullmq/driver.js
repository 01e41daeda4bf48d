'use strict';
/*
 * Adds BullMQ jobs for benchmarks.peers (started by the Python harness), with one Queue.
 *
 *   PEERS_REDIS_PORT=P PEERS_QUEUE=Q node driver.js
 *
 * Prints {"ev":"ready"} once connected, then reads one JSON command a line on stdin and
 * answers each with one {"ev":"reply", ...} line on stdout:
 *   {"cmd":"noops","n":N,"batch":B}  -> seconds spent adding N `noop` jobs with addBulk, B a call
 *   {"cmd":"root","run":R}           -> t0, wall-clock seconds just before queue.add('root')
 *   {"cmd":"pickup","i":I}           -> t0, likewise for one `pickup` job
 *   {"cmd":"warm","i":I}             -> an untimed `warm` job
 * Wall-clock time is performance.timeOrigin + performance.now(), in seconds.
 */
const readline = require('node:readline');
const { Queue } = require('bullmq');

const PORT = Number(process.env.PEERS_REDIS_PORT);
const QUEUE = process.env.PEERS_QUEUE || 'peers';
const queue = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: PORT } });

const now = () => (performance.timeOrigin + performance.now()) / 1000;
const reply = (fields) => process.stdout.write(JSON.stringify({ ev: 'reply', ...fields }) + '\n');

async function handle(command) {
  switch (command.cmd) {
    case 'noops': {
      const start = performance.now();
      for (let done = 0; done < command.n; ) {
        const size = Math.min(command.batch || 1000, command.n - done);
        const jobs = [];
        for (let k = 0; k < size; k += 1) jobs.push({ name: 'noop', data: {} });
        await queue.addBulk(jobs);
        done += size;
      }
      reply({ seconds: (performance.now() - start) / 1000 });
      return;
    }
    case 'root': {
      const t0 = now();
      await queue.add('root', { run: command.run });
      reply({ t0 });
      return;
    }
    case 'pickup': {
      const t0 = now();
      await queue.add('pickup', { i: command.i });
      reply({ t0 });
      return;
    }
    case 'warm':
      await queue.add('warm', { i: command.i });
      reply({});
      return;
    default:
      reply({ error: `unknown command ${command.cmd}` });
  }
}

async function main() {
  await queue.waitUntilReady();
  process.stdout.write(JSON.stringify({ ev: 'ready' }) + '\n');
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim()) await handle(JSON.parse(line));
  }
  await queue.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
