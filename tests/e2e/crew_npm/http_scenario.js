'use strict'
// Crew's own HttpWorkerGroup + HttpWorker (npm @orchard-insights/crew@1.0.25) as an operator of a
// crew_aio server: crew_aio leases the tasks and POSTs them to the worker's express server.
//
//   node http_scenario.js <server url> <worker port> <result.json>
//
// Registers one operator per channel (REST), creates a root task whose worker answers with a
// continuation (a kid and a "flaky" task after it), a flaky task that fails once (an error release,
// retried) and a "limited" task whose worker asks for a workgroup delay; waits until every task is
// complete, checks what happened and writes {ok, failures, data} to <result.json>. Exit 0 when
// every check passed, 1 when one failed, 2 on a usage error.

const fs = require('fs')

const [, , BASE_URL, PORT, OUT_FILE] = process.argv
if (!BASE_URL || !PORT || !OUT_FILE) {
  console.error('usage: node http_scenario.js <server url> <worker port> <result.json>')
  process.exit(2)
}
process.env.CREW_WORKER_PORT = PORT

const HttpWorker = require('@orchard-insights/crew/dist/src/HttpWorker').default
const HttpWorkerGroup = require('@orchard-insights/crew/dist/src/HttpWorkerGroup').default
const WorkerServer = require('@orchard-insights/crew/dist/src/WorkerServer').default

const { client, sleep } = require('./rest')

const api = client(BASE_URL)
const RUN = Date.now().toString(36)
const CH = { root: 'h_root_' + RUN, kid: 'h_kid_' + RUN }
const calls = []


class RootWorker extends HttpWorker {
  constructor () { super(); this.channel = CH.root; this.name = 'root' }
  async executeTask (input, parents, taskId) {
    calls.push({ worker: 'root', taskId, input })
    return {
      output: { root: true },
      children: [
        { _child_id: 1, name: 'kid', channel: CH.kid, input: { n: 1 } },
        { _child_id: 2, _parent_ids: [1], name: 'flaky', channel: CH.kid, input: { flaky: true }, errorDelayInSeconds: 1 },
        { name: 'limited', channel: CH.kid, workgroup: 'acct-' + RUN, input: { limited: true }, errorDelayInSeconds: 1 }
      ]
    }
  }
}

let flakyCalls = 0
let limitedCalls = 0
class KidWorker extends HttpWorker {
  constructor () { super(); this.channel = CH.kid; this.name = 'kid' }
  async executeTask (input, parents, taskId) {
    calls.push({ worker: 'kid', taskId, input, parents })
    if (input && input.flaky && ++flakyCalls === 1) throw new Error('boom')
    if (input && input.limited && ++limitedCalls === 1) {
      this.pauseWorkgroupSeconds = 1 // Crew's rate-limit signal: the answer carries the delay
      throw new Error('rate limited')
    }
    return { output: { seen: (parents || []).map((p) => p.output) } }
  }
}

async function main () {
  const server = new WorkerServer()
  const group = new HttpWorkerGroup([new RootWorker(), new KidWorker()], server)
  await sleep(300)
  const base = `http://127.0.0.1:${PORT}/execute/`
  for (const channel of Object.values(CH)) {
    await api('POST', '/operators', { channel, url: base + channel })
  }
  const g = await api('POST', '/task_groups', { name: 'http workers ' + RUN })
  await api('POST', `/task_group/${g._id}/tasks`, { name: 'root', channel: CH.root })
  let tasks = []
  const deadline = Date.now() + 30000
  while (Date.now() < deadline) {
    tasks = await api('GET', `/task_group/${g._id}/tasks`)
    if (tasks.length === 4 && tasks.every((t) => t.isComplete)) break
    await sleep(100)
  }
  const byName = Object.fromEntries(tasks.map((t) => [t.name, t]))
  const failures = []
  const check = (cond, what) => { if (!cond) failures.push(what) }
  check(tasks.length === 4 && tasks.every((t) => t.isComplete), 'every task completed')
  check(byName.flaky && JSON.stringify(byName.flaky.errors) === JSON.stringify(['boom']), 'flaky failed once with the worker\'s error, then passed')
  check(byName.flaky && JSON.stringify(byName.flaky.output) === JSON.stringify({ seen: [{ seen: [{ root: true }] }] }), 'flaky got its parent kid\'s output')
  check(byName.limited && JSON.stringify(byName.limited.errors) === JSON.stringify(['rate limited']), 'limited failed once (rate limit)')
  check(flakyCalls === 2 && limitedCalls === 2, 'each failing task was called twice')
  check(tasks.every((t) => t.assignedTo === null), 'nothing left assigned')
  const out = { ok: failures.length === 0, failures, data: { tasks: byName, calls } }
  fs.writeFileSync(OUT_FILE, JSON.stringify(out, null, 2))
  void group // Crew's startShutdown() ends the process with 1 whatever happened: exit here
  process.exit(out.ok ? 0 : 1)
}

main().catch((err) => { console.error(err); fs.writeFileSync(OUT_FILE, JSON.stringify({ ok: false, failures: [String(err)] })); process.exit(1) })
