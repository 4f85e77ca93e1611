// Sign-in and the admin API's client. The admin token lives in this tab's
// sessionStorage only: it is gone when the tab closes, and no other site or
// tab can read it. `#token=SECRET` (the link scripts/demo prints) signs in
// like the form does, on load and when the fragment changes in an open tab;
// the fragment is wiped from the address bar at once so it is neither
// bookmarked nor shared.

const TOKEN_KEY = 'kinema.apiToken';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signedIn() {
  return Boolean(token());
}

export function authHeaders() {
  const secret = token();
  return secret ? { Authorization: `Bearer ${secret}` } : {};
}

/** JSON from `path`; throws ApiError with the server's own sentence. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json', ...authHeaders() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response.status === 204 ? null : response.json();
}

export async function errorText(response) {
  const text = await response.text().catch(() => '');
  return errorOf(text, response.status, response.statusText);
}

export function errorOf(text, status, statusText = '') {
  try {
    const body = JSON.parse(text);
    return body.error ?? body.message ?? text;
  } catch {
    return text.trim() || `${status} ${statusText}`.trim();
  }
}

export function describeApiError(error) {
  if (error.status === 401) return 'the server did not accept your admin token; sign in again';
  if (error.status === 403) return 'your admin token may not do this (it needs the write scope)';
  return error.message;
}

/**
 * Wires the header's sign-in button and form; `changed()` runs after the
 * token changes (sign-in, sign-out, a `#token=` link) so the page redraws.
 */
export function setUpSignIn(changed) {
  const form = document.getElementById('signin-form');
  const input = document.getElementById('signin-input');
  const message = document.getElementById('signin-message');
  const button = document.getElementById('signin-toggle');
  const showState = () => {
    button.textContent = signedIn() ? 'Sign out' : 'Sign in';
    button.setAttribute('aria-expanded', String(!form.hidden));
    document.body.classList.toggle('signed-in', signedIn());
  };
  button.addEventListener('click', () => {
    if (signedIn()) {
      sessionStorage.removeItem(TOKEN_KEY);
      form.hidden = true;
      showState();
      changed();
      return;
    }
    form.hidden = !form.hidden;
    message.textContent = '';
    showState();
    if (!form.hidden) input.focus();
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const secret = input.value.trim();
    if (!secret) return;
    // Checked before it is kept: a mistyped token says so here, not as a
    // failure on some later page.
    const response = await fetch('/api/jobs', { headers: { Authorization: `Bearer ${secret}` } }).catch(() => null);
    if (!response?.ok) {
      message.textContent = response
        ? 'The server did not accept this token.'
        : 'The server could not be reached; try again.';
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, secret);
    input.value = '';
    form.hidden = true;
    showState();
    changed();
  });
  document.getElementById('signin-cancel').addEventListener('click', () => {
    form.hidden = true;
    showState();
  });
  window.addEventListener('hashchange', () => {
    if (takeTokenFromFragment()) {
      showState();
      changed();
    }
  });
  takeTokenFromFragment();
  showState();
}

/** Keeps the token a `#token=` fragment carries; true if there was one. */
function takeTokenFromFragment() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}
