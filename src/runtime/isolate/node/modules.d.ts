// npm packages the bundler maps under `nimbus-npm:` (src/build/node-compat.ts) for the Node
// compatibility modules; they are CommonJS without types.
declare module "nimbus-npm:util" {
  const util: unknown;
  export default util;
}
declare module "nimbus-npm:buffer" {
  export const Buffer: unknown;
}
