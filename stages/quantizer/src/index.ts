export { quantizeItem, runQuantizer } from "./quantizer.ts";
export { scaleDtypeFor } from "./scale-dtype.ts";
