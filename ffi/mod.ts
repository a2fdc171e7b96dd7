/**
 * The FFI layer: symbol table, record layouts, library loading.
 *
 * @module
 */
export { type StoqSymbols, symbols } from "./symbols.ts";
export {
  ABI_VERSION,
  Count,
  Cred,
  Ev,
  Op,
  RECORD_SIZE,
  Records,
  SETTINGS_FIELDS,
  Stat,
  Status,
  StreamShutdown,
  UNSET,
} from "./abi.ts";
export { BUILD_COMMAND, openLibrary } from "./library.ts";
