export * from "./connection.ts";
export * from "./embedded-server.ts";
export * from "./errors.ts";
export * from "./event-log.ts";
export * from "./services.ts";
export * from "./streams.ts";
export * from "./subjects.ts";
export * from "./work-queue.ts";
