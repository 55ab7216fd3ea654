export { moeq } from "./app.ts";
export { moeqVersion } from "./version.ts";
