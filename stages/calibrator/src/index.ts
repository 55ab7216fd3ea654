export { runCalibrator } from "./calibrator.ts";
export { dequantOverlay } from "./dequant.ts";
