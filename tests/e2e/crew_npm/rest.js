'use strict'
// The few REST calls the HttpWorker scenarios make to the crew_aio server (plain fetch).

function client (baseUrl) {
  const API = baseUrl.replace(/\/*$/, '') + '/api/v1'
  return async function api (method, path, body) {
    const res = await fetch(API + path, {
      method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body)
    })
    const data = await res.json()
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`)
    return data
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

module.exports = { client, sleep }
