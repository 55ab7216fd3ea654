export { runLoader } from "./loader.ts";
