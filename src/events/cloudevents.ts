/**
 * CloudEvents 1.0 (https://github.com/cloudevents/spec): the envelope of destination
 * reports. Incoming CloudEvents over HTTP (binary mode: `ce-*` headers; structured mode:
 * `application/cloudevents+json`) need nothing here: the gateway passes headers and body
 * through unchanged, sync and async.
 */

/** A CloudEvent in its JSON form. */
export interface CloudEvent {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  time?: string;
  subject?: string;
  datacontenttype?: string;
  /** JSON data (structured mode); binary data travels as `data_base64`. */
  data?: unknown;
  data_base64?: string;
  /** Extension attributes (lower-case alphanumeric names). */
  [extension: string]: unknown;
}

/** Content type of a structured-mode CloudEvent. */
export const STRUCTURED_TYPE = "application/cloudevents+json";
