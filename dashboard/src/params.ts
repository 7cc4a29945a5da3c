/** The URL's query with ``key`` set to ``value``, or removed when ``value`` is empty: how the
 * list pages keep their filters in a shareable URL. */
export function withParam(params: URLSearchParams, key: string, value: string): URLSearchParams {
  const next = new URLSearchParams(params);
  if (value) next.set(key, value);
  else next.delete(key);
  return next;
}
