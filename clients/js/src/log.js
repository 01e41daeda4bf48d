/** The pluggable logger: a function (level, message, fields) or an object with level methods. */

export function makeLogger(logger) {
  if (logger === null || logger === false) return () => {};
  if (typeof logger === "function") return (level, message, fields) => logger(message, { level, ...fields });
  if (logger && typeof logger === "object") {
    return (level, message, fields) => {
      const method = logger[level] ?? logger.info ?? logger.log;
      method?.call(logger, message, fields);
    };
  }
  return (level, message) => console.error(`${new Date().toISOString()} ${level.toUpperCase()} crew-aio ${message}`);
}
