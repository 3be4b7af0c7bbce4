// A page's query parameters against what it takes. `/` sends them, as the text they are, to the
// server, which checks them all (a 422 lists every problem with its valid choices); the other
// pages (a session, a comparison, a lesson) take none. Both end in the page's notice panel.
import { validText } from "./notice.js";

/** Every parameter of a query string as its text: {key: value} (the last of a repeated key). */
export function queryParams(search = location.search) {
  return Object.fromEntries(new URLSearchParams(search));
}

/** The server's problems ({field, message, choices}) as notice items, with each value from the link. */
export function problemItems(list, params, meta) {
  return list.map((p) => ({ field: p.field, value: p.field in params ? params[p.field] : undefined, message: p.message,
                            valid: validText(p.field, p.choices, meta) }));
}

/** `/?…` with the parameters the server refused taken out (the setup that is left); null when nothing is left. */
export function withoutFields(params, fields) {
  const kept = Object.entries(params).filter(([k]) => !fields.includes(k));
  return kept.length ? `/?${new URLSearchParams(kept)}` : null;
}

/**
 * Items for the parameters of a page that takes none (`what`: "a session page"), and a link
 * that starts a run with them when they are all config keys (`/s/ID?depth=30` meant `/?depth=30`).
 * @returns {{items: object[], title: string, actions: {href: string, text: string}[]}}
 */
export function unexpectedParams(params, what, isConfigKey = () => false) {
  const keys = Object.keys(params);
  const items = keys.map((k) => ({ field: k, value: params[k], message: `unknown key: ${what} takes no parameters, so it was ignored` }));
  const actions = [{ href: location.pathname, text: "Open this page without them" }, { href: "/", text: "Start the default run" }];
  if (keys.length && keys.every(isConfigKey)) actions.push({ href: `/?${new URLSearchParams(params)}`, text: "Start a new run with these settings" });
  const n = keys.length;
  return { items, actions, title: `This link has ${n} parameter${n === 1 ? "" : "s"} that ${what} does not take` };
}

/** "This link has 3 problems" */
export const countTitle = (n, what = "problem") => `This link has ${n} ${what}${n === 1 ? "" : "s"}`;
