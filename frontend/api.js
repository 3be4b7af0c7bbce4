// The server's API as the page calls it: requests that carry this browser's owner token, and the
// tokens themselves (one per session, kept in localStorage). No DOM; net.js does the transport.
import { request } from "./net.js";

const tokenKey = (id) => `gradscope.token.${id}`;

/** This browser's owner token for session `id`; null where it only watches the session. */
export const storedToken = (id) => localStorage.getItem(tokenKey(id));

/** Keep the owner token that a create, fork, compare or lesson start answered with. */
export const storeToken = (id, token) => localStorage.setItem(tokenKey(id), token);

/**
 * `request` (net.js) with `token`, if any, as `Authorization: Bearer TOKEN`.
 * @param {{token?: string|null, headers?: object, patient?: boolean}} [options]  `patient`: see net.js
 */
export function api(method, path, body, { token = null, headers = {}, patient = false } = {}) {
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  return request(method, path, body, { ...auth, ...headers }, { patient });
}
