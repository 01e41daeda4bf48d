'use strict'
// Crew's own HttpWorker killed mid-request, then started again: crew_aio's operator gets the
// task again and it completes.
//
//   node http_kill.js <server url> <worker port> <state.json> first|second
//
// first: registers an operator for a fresh channel, creates one task, serves it; the worker
//        kills its own process (SIGKILL) inside the request. second: serves the channel again
//        and waits until the task completes; writes {ok, task} to <state.json>.

const fs = require('fs')

const [, , BASE_URL, PORT, STATE, PHASE] = process.argv
if (!BASE_URL || !PORT || !STATE || !['first', 'second'].includes(PHASE)) {
  console.error('usage: node http_kill.js <server url> <worker port> <state.json> first|second')
  process.exit(2)
}
process.env.CREW_WORKER_PORT = PORT

const HttpWorker = require('@orchard-insights/crew/dist/src/HttpWorker').default
const HttpWorkerGroup = require('@orchard-insights/crew/dist/src/HttpWorkerGroup').default
const WorkerServer = require('@orchard-insights/crew/dist/src/WorkerServer').default

const { client, sleep } = require('./rest')

const api = client(BASE_URL)


const state = PHASE === 'first' ? { channel: 'h_victim_' + Date.now().toString(36) } : JSON.parse(fs.readFileSync(STATE))

class Victim extends HttpWorker {
  constructor () { super(); this.channel = state.channel; this.name = 'victim' }
  async executeTask (input, parents, taskId) {
    if (PHASE === 'first') process.kill(process.pid, 'SIGKILL') // dies mid-request: no answer
    return { output: { survived: true } }
  }
}

async function main () {
  const group = new HttpWorkerGroup([new Victim()], new WorkerServer())
  void group
  await sleep(300)
  if (PHASE === 'first') {
    await api('POST', '/operators', { channel: state.channel, url: `http://127.0.0.1:${PORT}/execute/${state.channel}` })
    const g = await api('POST', '/task_groups', { name: 'victim' })
    state.group = g._id
    fs.writeFileSync(STATE, JSON.stringify(state))
    await api('POST', `/task_group/${g._id}/tasks`, { name: 'victim', channel: state.channel, errorDelayInSeconds: 2 })
    await sleep(30000) // killed long before this
    process.exit(3)
  }
  const deadline = Date.now() + 30000
  let task = null
  while (Date.now() < deadline) {
    [task] = await api('GET', `/task_group/${state.group}/tasks`)
    if (task && task.isComplete) break
    await sleep(100)
  }
  const ok = Boolean(task && task.isComplete && task.output && task.output.survived)
  fs.writeFileSync(STATE, JSON.stringify({ ok, task }))
  process.exit(ok ? 0 : 1)
}

main().catch((err) => { console.error(err); process.exit(1) })
