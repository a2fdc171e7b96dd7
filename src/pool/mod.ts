/**
 * Connection pooling over the STOQ transport.
 *
 * @module
 */
export {
  ConnectionPool,
  type ConnectionPoolOptions,
  type ConnectionPoolStats,
  type PoolLease,
} from "./pool.ts";
