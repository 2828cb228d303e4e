/** The `Buffer` global of a function that opts into Node compatibility (injected where named). */
export { Buffer } from "nimbus-npm:buffer";
