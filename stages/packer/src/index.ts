export { runPacker } from "./packer.ts";
