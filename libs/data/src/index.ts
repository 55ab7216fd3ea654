// @moeq/data: calibration and evaluation text (Brown corpus split, .txt, .jsonl), the model's
// tokenizer, and seeded token windows.
export {
  type BrownDocument,
  brownCorpusDir,
  brownDocumentNames,
  brownSplitOf,
  brownTaggedToText,
  detokenizeTagged,
  loadBrownDocuments,
  type Split,
} from "./brownText.ts";
export {
  type CalibSource,
  type CalibSpec,
  parseCalibSpec,
  readJsonlDocuments,
  readTxtDocuments,
} from "./calibSpec.ts";
export {
  CalibSpecError,
  type DataError,
  NotEnoughTokensError,
  TextSourceError,
  TokenizerLoadError,
} from "./errors.ts";
export { loadTokenizer, type TextTokenizer } from "./tokenizer.ts";
export {
  cachedTokenStream,
  calibrationWindows,
  DEFAULT_WINDOWS,
  seededRandom,
  specDocuments,
  type TokenWindows,
  tokenStream,
  type WindowOptions,
  windowStarts,
  windowsFromStream,
} from "./windows.ts";
