/**
 * The FFI layer: symbol table, record layouts, library loading.
 *
 * @module
 */
export { type StoqSymbols, symbols } from "./symbols.ts";
export {
  ABI_VERSION,
  CloseKind,
  ConnectFlags,
  Count,
  Cred,
  Ev,
  Op,
  OpenFlags,
  Pool,
  RECORD_SIZE,
  Records,
  Reject,
  RtFlags,
  SendFlags,
  SETTINGS_FIELDS,
  Stat,
  Status,
  StreamShutdown,
  UNSET,
} from "./abi.ts";
export {
  BUILD_COMMAND,
  loadLibrary,
  openLibrary,
  userLibraryDir,
} from "./library.ts";
export * as Events from "./events.ts";
