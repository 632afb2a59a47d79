/**
 * Colocation groups in worker threads of one process.
 *
 * @since 0.1.0
 */

/**
 * The hub: the transport of the thread that starts the workers.
 *
 * @since 0.1.0
 */
export * as TransportWorker from "./TransportWorker.js"

/**
 * The worker thread's side.
 *
 * @since 0.1.0
 */
export * as Worker from "./Worker.js"
