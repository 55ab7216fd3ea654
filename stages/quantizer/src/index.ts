export { quantizeItem, runQuantizer } from "./quantizer.ts";
