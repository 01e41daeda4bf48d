/** Test helpers: a real crew_aio server on port 0 with its data in a temp dir. */

import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_ROOT = resolve(PACKAGE_ROOT, "../..");
export const PYTHON = process.env.CREW_PYTHON ?? join(REPO_ROOT, ".venv/bin/python");

/**
 * Start `python -m crew_aio serve --port 0` and resolve once it logs its address.
 * @returns {Promise<{url: string, stop: () => Promise<void>, stderr: () => string}>}
 */
export async function startServer({ env = {}, timeoutMs = 20_000 } = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), "crew-aio-js-"));
  const child = spawn(PYTHON, ["-m", "crew_aio", "serve", "--port", "0", "--data-dir", dataDir], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const exited = new Promise((resolveExit) => child.once("exit", resolveExit));
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), timeoutMs);
    child.once("error", reject);
    exited.then((code) => reject(new Error(`server exited (${code}):\n${log}`)));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = /crew-aio listening on (http:\/\/[^\s]+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    });
  }).catch(async (err) => {
    child.kill("SIGKILL");
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  });
  return {
    url,
    stderr: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A logger that keeps lines for assertions. */
export function memoryLogger() {
  const lines = [];
  const logger = (message, fields) => lines.push({ message, ...fields });
  logger.lines = lines;
  return logger;
}

/** Poll `probe` until it returns a truthy value. */
export async function eventually(probe, { timeoutMs = 10_000, everyMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP proxy in front of the server: `dropAll()` cuts every connection (a network blip),
 * `blockWs = true` refuses WebSocket upgrades (push unavailable, REST still works).
 */
export async function startProxy(targetUrl) {
  const net = await import("node:net");
  const target = new URL(targetUrl);
  const pairs = new Set();
  const proxy = {
    blockWs: false,
    refuse: false, // cut every new connection: the server looks down
    ws404: false, // answer WebSocket upgrades 404, like a server without the route (Crew)
    upgrades: 0,
    dropAll() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      // connections accepted but not yet piped (no data yet) must go too, or a request sent
      // on one of them after the drop would still reach the server
      for (const client of accepted) client.destroy();
      accepted.clear();
    },
  };
  const accepted = new Set();
  const server = net.createServer((client) => {
    client.on("error", () => {});
    if (proxy.refuse) return client.destroy();
    accepted.add(client);
    client.on("close", () => accepted.delete(client));
    client.once("data", (first) => {
      if (proxy.refuse) return client.destroy();
      accepted.delete(client);
      client.pause();
      const isWs = /^upgrade:\s*websocket/im.test(first.toString("latin1"));
      if (isWs && proxy.blockWs) return client.destroy();
      if (isWs && proxy.ws404) {
        return client.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      }
      if (isWs) proxy.upgrades += 1;
      const upstream = net.connect(Number(target.port), target.hostname, () => {
        upstream.write(first);
        client.pipe(upstream);
        upstream.pipe(client);
      });
      const pair = { client, upstream };
      pairs.add(pair);
      const end = () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      upstream.on("error", end);
      upstream.on("close", end);
      client.on("close", end);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  proxy.close = () => {
    proxy.dropAll();
    return new Promise((resolve) => server.close(resolve));
  };
  return proxy;
}
