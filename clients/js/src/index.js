/** crew-aio: JavaScript worker SDK and client for the crew_aio task server. */

export { Worker, Result } from "./worker.js";
export { RateLimited, CrewError } from "./errors.js";
export { runWorkers } from "./runner.js";
export { Client } from "./client.js";
