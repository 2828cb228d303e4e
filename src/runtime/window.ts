/**
 * Sizes of response body flow, shared by the frame protocol and the isolate runtime (which
 * cannot load the protocol module: it uses Node's Buffer). Imports nothing.
 */

/** Response body chunks are sent in frames of at most this many bytes. */
export const MAX_CHUNK = 1024 * 1024;

/**
 * Response body bytes an instance may have sent for one invocation that the platform has
 * not yet passed on to the caller (flow control). An instance starts every invocation with
 * this much credit and gets more in CREDIT frames as the caller reads; one that sends more
 * is stopped. A slow reader therefore pauses the function instead of piling its response up
 * in the platform's memory.
 */
export const FLOW_WINDOW = 2 * 1024 * 1024;
