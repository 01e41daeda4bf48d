'use strict';
/*
 * One BullMQ worker process of benchmarks.peers (started by the Python harness).
 *
 *   PEERS_REDIS_PORT=P PEERS_QUEUE=Q node worker.js C
 *
 * Runs `new Worker(Q, processor, {connection, concurrency: C})` (other options default) and
 * reports on stdout, one JSON object a line: {"ev":"ready"} once connected, "progress" (task
 * counts per job name, and for the W1 no-ops the wall-clock seconds of the first execute start
 * and of the last execute end, with this process's CPU seconds at those two moments) every
 * 50 ms while it changes, and one line per pickup / join / warm-up job. Wall-clock time is
 * performance.timeOrigin + performance.now() (sub-millisecond), in seconds like Python's
 * time.time(). Job names:
 *   noop        W1 no-op
 *   pickup {i}  W3: reports its index and start time (first line of the processor)
 *   warm {i}    warm-up, reported
 *   root {run}  W2: adds 100 `child` jobs with one addBulk
 *   child {run} W2: adds 10 `gc` jobs with one addBulk
 *   gc {run}    W2: INCR peers:w2:<run>; the one that reaches 1,000 notes the time, then adds
 *               the `join` job carrying it
 *   join {run, gc} W2: reports its start time and the last grandchild's
 */
const { Worker, Queue } = require('bullmq');
const IORedis = require('ioredis');

const PORT = Number(process.env.PEERS_REDIS_PORT);
const QUEUE = process.env.PEERS_QUEUE || 'peers';
const CONCURRENCY = Number(process.argv[2] || '1');
const CHILDREN = 100;
const GRANDCHILDREN = 10;
const connection = { host: '127.0.0.1', port: PORT, maxRetriesPerRequest: null };

const now = () => (performance.timeOrigin + performance.now()) / 1000;
const cpu = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
};
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const counts = {};
const w1 = { first: 0, last: 0, cpu_first: 0, cpu_last: 0 };
let version = 0;
const count = (name) => {
  counts[name] = (counts[name] || 0) + 1;
  version += 1;
};

const queue = new Queue(QUEUE, { connection });
const counter = new IORedis(connection);

async function processor(job) {
  const started = now();
  switch (job.name) {
    case 'noop':
      if (!counts.noop) {
        w1.first = started;
        w1.cpu_first = cpu();
      }
      count('noop');
      w1.last = now();
      w1.cpu_last = cpu();
      return;
    case 'pickup':
      emit({ ev: 'pickup', i: job.data.i, t: started });
      count('pickup');
      return;
    case 'warm':
      emit({ ev: 'warm', i: job.data.i });
      return;
    case 'root': {
      count('root');
      const jobs = [];
      for (let c = 0; c < CHILDREN; c += 1) jobs.push({ name: 'child', data: { run: job.data.run } });
      await queue.addBulk(jobs);
      return;
    }
    case 'child': {
      count('child');
      const jobs = [];
      for (let g = 0; g < GRANDCHILDREN; g += 1) jobs.push({ name: 'gc', data: { run: job.data.run } });
      await queue.addBulk(jobs);
      return;
    }
    case 'gc': {
      count('grandchild');
      const n = await counter.incr(`peers:w2:${job.data.run}`);
      if (n === CHILDREN * GRANDCHILDREN) {
        const last = now();
        await queue.add('join', { run: job.data.run, gc: last });
      }
      return;
    }
    case 'join':
      emit({ ev: 'join', run: job.data.run, t: started, gc: job.data.gc });
      count('join');
      return;
    default:
      throw new Error(`unknown job name ${job.name}`);
  }
}

async function main() {
  const worker = new Worker(QUEUE, processor, { connection, concurrency: CONCURRENCY });
  const ready = new Promise((resolve) => worker.once('ready', resolve));
  worker.on('failed', (job, err) => {
    emit({ ev: 'failed', job: job ? `${job.name} ${job.id}` : null, error: String(err) });
  });
  worker.on('error', (err) => console.error('worker error:', err));

  let sent = 0;
  setInterval(() => {
    if (version === sent) return;
    sent = version;
    emit({ ev: 'progress', counts, ...w1 });
  }, 50);

  let closing = false;
  process.on('SIGTERM', async () => {
    if (closing) return;
    closing = true;
    setTimeout(() => process.exit(0), 3000).unref();
    try {
      await worker.close(true);
      await queue.close();
      counter.disconnect();
    } finally {
      process.exit(0);
    }
  });

  await Promise.all([ready, queue.waitUntilReady(), counter.ping()]);
  emit({ ev: 'ready' });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
