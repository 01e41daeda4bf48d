'use strict'
// Crew's own published Worker class (npm @orchard-insights/crew@1.0.25) against a crew_aio server.
//
//   node scenario.js <dag|retry|workgroup|duplicate_key|long_task> <server url> <result.json>
//
// Each scenario sets up tasks through crew_aio's REST API (plain fetch), runs Crew Worker
// subclasses until the tasks settle, checks what happened and writes one JSON document to
// <result.json>: {scenario, ok, failures, serverErrors, data}. `serverErrors` lists every non-2xx
// answer the server gave Crew's Worker (method, url, request body, status, response body): under
// the Crew contract none is expected, so the first one ends the scenario early. Exit code 0 when
// every check passed, 1 when one failed, 2 on a usage or setup error. Crew's Worker logs every
// step to the console; the test shows that output only when the scenario fails.

const fs = require('fs')
const path = require('path')

const [, , SCENARIO, BASE_URL, OUT_FILE] = process.argv
if (!SCENARIO || !BASE_URL || !OUT_FILE) {
  console.error('usage: node scenario.js <scenario> <server url> <result.json>')
  process.exit(2)
}

// Crew's Worker reads these in its constructor.
process.env.CREW_API_BASE_URL = BASE_URL.replace(/\/*$/, '/')
process.env.CREW_WORK_INTERVAL_IN_MILLISECONDS = '200'
process.env.CREW_WORK_INTERVAL_RESTART = 'yes'

// The subpath only: Worker.js needs axios, uniqid, async-retry and set-interval-async, never mongodb.
const WORKER_MODULE = require.resolve('@orchard-insights/crew/dist/src/Worker')
const Worker = require(WORKER_MODULE).default
// The very axios instance Crew's Worker posts with, to record what the server answers it.
const axios = require(require.resolve('axios', { paths: [path.dirname(WORKER_MODULE)] }))

const API = BASE_URL.replace(/\/*$/, '') + '/api/v1'
const RUN = Date.now().toString(36) + Math.random().toString(36).slice(2, 6)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// What the server answered Crew's Worker

const traffic = [] // every acquire/release: {t, method, url, status}
const serverErrors = [] // non-2xx answers, in full

function recordExchange (config, status, data) {
  const entry = { t: Date.now(), method: (config.method || '').toUpperCase(), url: config.url, status }
  traffic.push(entry)
  if (!(status >= 200 && status < 300)) {
    let request = config.data
    try { request = JSON.parse(config.data) } catch (e) { /* keep it as sent */ }
    serverErrors.push({ ...entry, request, response: data })
  }
}

axios.interceptors.response.use(
  (response) => {
    recordExchange(response.config, response.status, response.data)
    return response
  },
  (error) => {
    if (error.config) {
      recordExchange(error.config, error.response ? error.response.status : null,
        error.response ? error.response.data : String(error))
    }
    return Promise.reject(error)
  }
)

// ---------------------------------------------------------------------------------------------
// crew_aio's REST API, for setup and inspection (not through Crew's code)

async function api (method, urlPath, body) {
  const response = await fetch(API + urlPath, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await response.text()
  let data = text
  try { data = JSON.parse(text) } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const error = new Error(`setup: ${method} ${urlPath} ${JSON.stringify(body)} -> ${response.status} ${text}`)
    error.setup = true
    throw error
  }
  return data
}

const createGroup = (name) => api('POST', '/task_groups', { name: `${name}-${RUN}` })
const createTask = (groupId, spec) => api('POST', `/task_group/${groupId}/tasks`, spec)
const getTask = (id) => api('GET', `/task/${id}`)
const groupTasks = (groupId) => api('GET', `/task_group/${groupId}/tasks`)

// ---------------------------------------------------------------------------------------------
// Checks, workers, waiting

const failures = []
function expect (condition, message, details) {
  if (!condition) {
    failures.push(details === undefined ? message : `${message}: ${JSON.stringify(details)}`)
  }
  return Boolean(condition)
}

const deepEqual = (a, b) => {
  try { require('assert').deepStrictEqual(a, b); return true } catch (e) { return false }
}

const running = [] // {worker, started}

function start (worker) {
  running.push({ worker, started: worker.startWork() })
  return worker
}

// startWork() finishes its first drain loop before it installs its interval: stop the loop, wait
// for startWork, then stopWork again to clear the interval (it waits for a running iteration).
async function stopAll () {
  for (const { worker } of running) worker.shuttingDown = true
  await Promise.all(running.map(async ({ worker, started }) => {
    await started
    await worker.stopWork()
  }))
}

class Failed extends Error {}

// Polls until `probe` returns a truthy value; stops early when the server refused the Worker.
async function waitFor (label, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    if (serverErrors.length > 0) {
      throw new Failed(`while waiting for ${label}: the server refused a request of Crew's Worker ` +
        `(${serverErrors[0].method} ${serverErrors[0].url} -> ${serverErrors[0].status} ` +
        `${JSON.stringify(serverErrors[0].response)})`)
    }
    last = await probe()
    if (last) return last
    if (Date.now() > deadline) throw new Failed(`timed out after ${timeoutMs} ms waiting for ${label}`)
    await sleep(100)
  }
}

const allComplete = async (ids) => {
  const tasks = await Promise.all(ids.map(getTask))
  return tasks.every((t) => t.isComplete === true) ? tasks : null
}

const brief = (t) => t && {
  _id: t._id,
  name: t.name,
  channel: t.channel,
  status: t.status,
  isComplete: t.isComplete,
  remainingAttempts: t.remainingAttempts,
  runAfter: t.runAfter,
  errors: t.errors,
  input: t.input,
  output: t.output,
  assignedTo: t.assignedTo,
  parentIds: t.parentIds
}

// ---------------------------------------------------------------------------------------------
// 1. A continuation DAG with integer pseudo-ids (a diamond, as Crew's 'can complete with dag children')

async function dag () {
  const CH_SEED = `dag-seed-${RUN}`
  const CH_CHILD = `dag-child-${RUN}`
  const executions = []
  const seedOutput = { seed: 'done', order: 7 }

  class SeedWorker extends Worker {
    channel = CH_SEED
    async executeTask (input, parents) {
      executions.push({ name: this.task.name, _id: this.task._id, input, parents, worker: this.id })
      return {
        output: seedOutput,
        children: [
          { _child_id: 0, name: 'B0', channel: CH_CHILD, input: { step: 0 } },
          { _child_id: 1, _parent_ids: [0], name: 'B1', channel: CH_CHILD, priority: 1, input: { step: 1 } },
          { _child_id: 2, _parent_ids: [0], name: 'B2', channel: CH_CHILD, input: { step: 2 } },
          { _child_id: 3, _parent_ids: [1, 2], name: 'B3', channel: CH_CHILD, input: { step: 3 } }
        ]
      }
    }
  }

  class ChildWorker extends Worker {
    channel = CH_CHILD
    async executeTask (input, parents) {
      const record = { name: this.task.name, _id: this.task._id, input, parents, worker: this.id, start: Date.now() }
      executions.push(record)
      await sleep(150)
      record.end = Date.now()
      return { output: { from: this.task.name, step: input.step } }
    }
  }

  const group = await createGroup('crew-npm-dag')
  const seed = await createTask(group._id, { name: 'seed', channel: CH_SEED, isSeed: true, input: { order: 7 } })
  start(new SeedWorker())
  start(new ChildWorker()) // two on the child channel: B1 and B2 may run at the same time,
  start(new ChildWorker()) // B3 (the join) still must wait for both

  const tasks = await waitFor('the seed and its 4 children to complete', 15000, async () => {
    const all = await groupTasks(group._id)
    return all.length === 5 && all.every((t) => t.isComplete === true) ? all : null
  })
  const byName = Object.fromEntries(tasks.map((t) => [t.name, t]))
  const ran = (name) => executions.filter((e) => e.name === name)
  const parentView = (p) => ({ _id: p._id, channel: p.channel, input: p.input, output: p.output })

  expect(deepEqual(tasks.map((t) => t.name).sort(), ['B0', 'B1', 'B2', 'B3', 'seed']),
    'the group holds the seed and B0..B3', tasks.map((t) => t.name))
  for (const name of ['seed', 'B0', 'B1', 'B2', 'B3']) {
    expect(ran(name).length === 1, `${name} executed exactly once`, ran(name).length)
  }
  expect(deepEqual(byName.seed.output, seedOutput), 'the seed stored its output', byName.seed.output)
  for (const name of ['B0', 'B1', 'B2', 'B3']) {
    const step = Number(name.slice(1))
    expect(deepEqual(byName[name].output, { from: name, step }), `${name} stored its output`, byName[name].output)
  }
  const ids = (list) => [...list].sort()
  expect(deepEqual(byName.B0.parentIds, [seed._id]), "B0's parent is the seed", byName.B0.parentIds)
  expect(deepEqual(byName.B1.parentIds, [byName.B0._id]), "B1's parent is B0", byName.B1.parentIds)
  expect(deepEqual(byName.B2.parentIds, [byName.B0._id]), "B2's parent is B0", byName.B2.parentIds)
  expect(deepEqual(ids(byName.B3.parentIds), ids([byName.B1._id, byName.B2._id])),
    "B3's parents are B1 and B2", byName.B3.parentIds)

  const [b0, b1, b2, b3] = ['B0', 'B1', 'B2', 'B3'].map((n) => ran(n)[0])
  if (b0 && b1 && b2 && b3) {
    const expected = (...names) => names.map((n) => byName[n]).map((t) => ({ _id: t._id, channel: t.channel, input: t.input, output: t.output }))
    const sortById = (list) => [...list].sort((a, b) => (a._id < b._id ? -1 : 1))
    expect(deepEqual(b0.parents.map(parentView), expected('seed')),
      "B0 received the seed's channel, input and output as parents", b0.parents)
    expect(deepEqual(b1.parents.map(parentView), expected('B0')), "B1 received B0's output", b1.parents)
    expect(deepEqual(b2.parents.map(parentView), expected('B0')), "B2 received B0's output", b2.parents)
    expect(deepEqual(sortById(b3.parents.map(parentView)), sortById(expected('B1', 'B2'))),
      "B3 received B1's and B2's outputs", b3.parents)
    expect(b1.start >= b0.end && b2.start >= b0.end, 'B1 and B2 started after B0 finished',
      { b0End: b0.end, b1Start: b1.start, b2Start: b2.start })
    expect(b3.start >= b1.end && b3.start >= b2.end, 'the join B3 started after both B1 and B2 finished',
      { b1End: b1.end, b2End: b2.end, b3Start: b3.start })
  }
  return {
    tasks: tasks.map(brief),
    executions: executions.map((e) => ({ name: e.name, parents: e.parents.map(parentView), start: e.start, end: e.end }))
  }
}

// ---------------------------------------------------------------------------------------------
// 2. A retry: the first attempt throws, a later one succeeds

async function retry () {
  const CH = `retry-${RUN}`
  const attempts = []

  class FlakyWorker extends Worker {
    channel = CH
    async executeTask (input) {
      // what the server says about this task while this attempt runs
      const seen = brief(await getTask(this.task._id))
      attempts.push({ at: Date.now(), seen })
      if (attempts.length === 1) throw new Error('boom')
      return { output: { ok: true, attempt: attempts.length, input } }
    }
  }

  const group = await createGroup('crew-npm-retry')
  const task = await createTask(group._id, {
    name: 'flaky', channel: CH, input: { n: 1 }, remainingAttempts: 3, errorDelayInSeconds: 0
  })
  start(new FlakyWorker())
  const [done] = await waitFor('the flaky task to complete', 10000, () => allComplete([task._id]))

  expect(task.remainingAttempts === 3, 'the task was created with 3 attempts', task.remainingAttempts)
  expect(attempts.length === 2, 'executeTask ran exactly twice (one failure, one success)', attempts.length)
  expect(deepEqual(done.output, { ok: true, attempt: 2, input: { n: 1 } }),
    'the task holds the output of the successful attempt', done.output)
  expect(deepEqual(done.errors, ['boom']), "errors holds the thrown message 'boom'", done.errors)
  if (attempts.length >= 2) {
    const second = attempts[1].seen
    expect(second.remainingAttempts === 2, 'the failed attempt cost one attempt (3 -> 2)', second.remainingAttempts)
    expect(deepEqual(second.errors, ['boom']), "during the second attempt errors already held 'boom'", second.errors)
  }
  expect(done.remainingAttempts < 3, 'remainingAttempts went down', done.remainingAttempts)
  return { task: brief(done), attempts }
}

// ---------------------------------------------------------------------------------------------
// 3. A workgroup delay after a simulated 429 (the worker sets pauseWorkgroupSeconds and throws)

async function workgroup () {
  const CH = `workgroup-${RUN}`
  const LIMITED = `token-limited-${RUN}`
  const OTHER = `token-other-${RUN}`
  const PAUSE = 3
  const runs = []
  let throwAt = null

  class RateLimitedWorker extends Worker {
    channel = CH
    async executeTask (input) {
      runs.push({ name: this.task.name, at: Date.now() })
      if (this.task.name === 'limited-1' && throwAt === null) {
        this.pauseWorkgroupSeconds = PAUSE // what Crew's docs tell a worker to do on a 429
        throwAt = Date.now()
        throw new Error('429 Too Many Requests')
      }
      return { output: { name: this.task.name } }
    }
  }

  const group = await createGroup('crew-npm-workgroup')
  const spec = (name, wg, priority) => ({ name, channel: CH, workgroup: wg, priority, errorDelayInSeconds: 0, input: { name } })
  const l1 = await createTask(group._id, spec('limited-1', LIMITED, 10)) // acquired first
  const l2 = await createTask(group._id, spec('limited-2', LIMITED, 5))
  const o1 = await createTask(group._id, spec('other-1', OTHER, 0))
  const o2 = await createTask(group._id, spec('other-2', OTHER, 0))
  start(new RateLimitedWorker()) // one worker: it would take limited-2 next unless it is delayed

  const others = await waitFor('the other workgroup to complete', 8000, () => allComplete([o1._id, o2._id]))
  const duringPause = Date.now()
  const l2Paused = await getTask(l2._id)
  const l1Paused = await getTask(l1._id)
  const done = await waitFor('the limited workgroup to complete after its pause', (PAUSE + 7) * 1000,
    () => allComplete([l1._id, l2._id]))

  const runsOf = (name) => runs.filter((r) => r.name === name)
  expect(throwAt !== null, 'limited-1 ran first and threw the 429', runs)
  if (throwAt !== null) {
    const pauseEnd = throwAt + PAUSE * 1000
    const runAfter = (t) => (t.runAfter ? Date.parse(t.runAfter) : null)
    expect(duringPause < pauseEnd, 'the other workgroup completed within the pause', { throwAt, duringPause })
    expect(!l2Paused.isComplete, 'limited-2 did not run during the pause', brief(l2Paused))
    expect(runAfter(l2Paused) !== null && runAfter(l2Paused) >= pauseEnd - 100 && runAfter(l2Paused) <= pauseEnd + 2000,
      `limited-2's runAfter is about ${PAUSE} s after the 429`, { throwAt, runAfter: l2Paused.runAfter })
    expect(runAfter(l1Paused) !== null && runAfter(l1Paused) >= pauseEnd - 100,
      `limited-1 itself is delayed ${PAUSE} s too`, { throwAt, runAfter: l1Paused.runAfter })
    for (const name of ['other-1', 'other-2']) {
      const r = runsOf(name)
      expect(r.length === 1 && r[0].at > throwAt && r[0].at < pauseEnd,
        `${name} ran once, during the pause`, { throwAt, runs: r })
    }
    const l2Runs = runsOf('limited-2')
    const l1Runs = runsOf('limited-1')
    expect(l2Runs.length === 1 && l2Runs[0].at >= pauseEnd - 100, 'limited-2 ran once, after the pause',
      { throwAt, runs: l2Runs })
    expect(l1Runs.length === 2 && l1Runs[1].at >= pauseEnd - 100, 'limited-1 ran again after the pause',
      { throwAt, runs: l1Runs })
  }
  const [l1Done, l2Done] = done
  expect(deepEqual(l1Done.errors, ['429 Too Many Requests']), "limited-1's errors hold the 429's message", l1Done.errors)
  expect(deepEqual(l1Done.output, { name: 'limited-1' }) && deepEqual(l2Done.output, { name: 'limited-2' }),
    'the limited tasks hold their outputs', [l1Done.output, l2Done.output])
  return {
    pauseSeconds: PAUSE,
    throwAt,
    duringPause: { at: duringPause, limited1: brief(l1Paused), limited2: brief(l2Paused) },
    runs,
    final: [...done, ...others].map(brief)
  }
}

// ---------------------------------------------------------------------------------------------
// 4. The same channel + key in two groups runs once

async function duplicateKey () {
  const CH = `dupkey-${RUN}`
  const KEY = `report-2024-${RUN}`
  const calls = []

  class DedupWorker extends Worker {
    channel = CH
    async executeTask (input) {
      calls.push({ taskId: this.task._id, name: this.task.name, worker: this.id, at: Date.now() })
      await sleep(300)
      return { output: { value: 42, computedBy: this.id } }
    }
  }

  const g1 = await createGroup('crew-npm-dupkey-1')
  const g2 = await createGroup('crew-npm-dupkey-2')
  const t1 = await createTask(g1._id, { name: 'in-group-1', channel: CH, key: KEY, input: { group: 1 } })
  const t2 = await createTask(g2._id, { name: 'in-group-2', channel: CH, key: KEY, input: { group: 2 } })
  start(new DedupWorker()) // two workers: without the key the second would take the other task
  start(new DedupWorker())

  await waitFor('both keyed tasks to complete', 10000, () => allComplete([t1._id, t2._id]))
  await sleep(1000) // five poll intervals: a second execution would show up here
  const done = await Promise.all([getTask(t1._id), getTask(t2._id)])

  expect(calls.length === 1, 'executeTask ran once for the two tasks with the same key', calls)
  expect(done.every((t) => t.isComplete === true), 'both tasks are complete', done.map(brief))
  if (calls.length >= 1) {
    const expected = { value: 42, computedBy: calls[0].worker }
    expect(done.every((t) => deepEqual(t.output, expected)), 'both tasks hold the one output', done.map((t) => t.output))
  }
  return { calls, tasks: done.map(brief) }
}

// ---------------------------------------------------------------------------------------------
// 5. A task longer than the lease (the server runs with --lease-seconds 2; Crew's Worker has no heartbeat)

async function longTask () {
  const CH = `long-${RUN}`
  const RUN_MS = 4000
  const executions = []

  class SlowWorker extends Worker {
    channel = CH
    async executeTask (input) {
      executions.push({ worker: this.id, taskId: this.task._id, at: Date.now() })
      await sleep(RUN_MS)
      return { output: { done: 'slow', by: this.id, input } }
    }
  }

  const group = await createGroup('crew-npm-long')
  const task = await createTask(group._id, { name: 'slow', channel: CH, input: { n: 5 } })
  const worker = start(new SlowWorker()) // the only worker of this channel

  await waitFor('the slow task to be acquired', 5000, async () => executions.length > 0)
  await sleep(RUN_MS - 1000) // past the 2 s lease, before the worker releases
  const afterLease = brief(await getTask(task._id))
  const [done] = await waitFor('the slow task to complete', RUN_MS + 6000, () => allComplete([task._id]))
  await sleep(1000) // a second execution would show up here
  const final = await getTask(task._id)

  expect(executions.length === 1, 'executeTask ran exactly once', executions)
  expect(executions.every((e) => e.worker === worker.id), 'it ran on the one worker', executions)
  expect(final.isComplete === true, 'the task is complete', brief(final))
  expect(deepEqual(final.output, { done: 'slow', by: worker.id, input: { n: 5 } }),
    "the task holds that worker's output", final.output)
  const releases = traffic.filter((e) => e.url.endsWith(`/task/${task._id}/release`))
  expect(releases.length === 1 && releases[0].status === 200,
    'its one late release was accepted', releases)
  return { workerId: worker.id, executions, afterLease, completed: brief(done), final: brief(final), releases }
}

// ---------------------------------------------------------------------------------------------

const SCENARIOS = { dag, retry, workgroup, duplicate_key: duplicateKey, long_task: longTask }

function writeResult (result) {
  fs.writeFileSync(OUT_FILE, JSON.stringify(result, null, 2))
}

async function main () {
  const run = SCENARIOS[SCENARIO]
  if (!run) {
    console.error(`unknown scenario ${SCENARIO}; one of ${Object.keys(SCENARIOS).join(', ')}`)
    process.exit(2)
  }
  let data = null
  let setupError = null
  try {
    data = await run()
  } catch (error) {
    if (error instanceof Failed) failures.push(error.message)
    else setupError = error
  }
  expect(serverErrors.length === 0, `the server refused ${serverErrors.length} request(s) of Crew's Worker`,
    serverErrors.map((e) => `${e.method} ${e.url} -> ${e.status} ${JSON.stringify(e.response)}`))
  const ok = failures.length === 0 && setupError === null
  const result = { scenario: SCENARIO, ok, failures, serverErrors, data, setupError: setupError && String(setupError.stack || setupError) }
  writeResult(result)
  if (!ok) {
    console.error(`\nSCENARIO ${SCENARIO} FAILED`)
    if (setupError) console.error(`  setup error: ${setupError.stack || setupError}`)
    for (const f of failures) console.error(`  - ${f}`)
    // A refused release is retried by Crew's Worker for ~15 s; don't wait for that.
    process.exit(setupError ? 2 : 1)
  }
  // Success: stop every worker the way Crew's WorkerGroup does and let Node exit by itself.
  await stopAll()
}

main().catch((error) => {
  console.error(error)
  process.exit(2)
})
