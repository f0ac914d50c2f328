// Talking to the node's API: the session (a short-lived access token in memory, the refresh
// token in sessionStorage, never a password), JSON requests, uploads with progress, downloads
// and Server-Sent Events over fetch (EventSource cannot send the Authorization header).

const BASE = '/api/v1';
const session = { access: null, me: null };

export class ApiError extends Error {
  constructor(status, message, details) {
    super(message);
    this.status = status;
    this.details = details;
  }
}

async function parse(resp) {
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!resp.ok) {
    const err = body && body.error ? body.error : { message: text || resp.statusText };
    throw new ApiError(resp.status, err.message || resp.statusText, err.details);
  }
  return body;
}

function keep(tokens) {
  session.access = tokens.access_token;
  sessionStorage.setItem('fedimpute.refresh', tokens.refresh_token);
}

export function me() { return session.me; }

export async function login(username, password) {
  const resp = await fetch(`${BASE}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }),
  });
  keep(await parse(resp));
  session.me = await api('/me');
  return session.me;
}

/** Changes the caller's password; every session ends and this one continues as a new one. */
export async function changePassword(currentPassword, newPassword) {
  const tokens = await api('/me/password', {
    method: 'PUT', body: { current_password: currentPassword, new_password: newPassword },
  });
  keep(tokens);
  session.me = await api('/me');
  return session.me;
}

async function refresh() {
  const token = sessionStorage.getItem('fedimpute.refresh');
  if (!token) return false;
  const resp = await fetch(`${BASE}/auth/refresh`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: token }),
  });
  if (!resp.ok) { sessionStorage.removeItem('fedimpute.refresh'); return false; }
  keep(await resp.json());
  return true;
}

/** Resumes the session after a reload, if the refresh token is still good. */
export async function restore() {
  if (!(await refresh())) return null;
  session.me = await api('/me');
  return session.me;
}

export async function logout() {
  const token = sessionStorage.getItem('fedimpute.refresh');
  if (token) {
    await fetch(`${BASE}/auth/logout`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${session.access}` },
      body: JSON.stringify({ refresh_token: token }),
    }).catch(() => {});
  }
  sessionStorage.removeItem('fedimpute.refresh');
  session.access = null;
  session.me = null;
}

async function authorized(path, init = {}) {
  const go = () => fetch(path.startsWith('/') && !path.startsWith(BASE) ? BASE + path : path, {
    ...init, headers: { ...(init.headers || {}), authorization: `Bearer ${session.access}` },
  });
  let resp = await go();
  if (resp.status === 401 && (await refresh())) resp = await go();
  return resp;
}

/** A JSON request to the API; throws ApiError with the node's message. */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method };
  if (body !== undefined) {
    init.headers = { 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  return parse(await authorized(path, init));
}

/** Posts multipart `form` to `path`, reporting upload progress (0..1). */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const send = (retried) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', BASE + path);
      xhr.setRequestHeader('authorization', `Bearer ${session.access}`);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onerror = () => reject(new ApiError(0, 'the node could not be reached'));
      xhr.onload = async () => {
        if (xhr.status === 401 && !retried && (await refresh())) return send(true);
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { body = null; }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(new ApiError(xhr.status, body?.error?.message || xhr.statusText, body?.error?.details));
      };
      xhr.send(form);
    };
    send(false);
  });
}

/** Downloads a file the API serves, under `name`. */
export async function download(path, name) {
  const resp = await authorized(path);
  if (!resp.ok) await parse(resp);
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Follows a Server-Sent Events endpoint, calling onEvent(data) per event, until `signal` aborts or it ends. */
export async function events(path, onEvent, signal) {
  const resp = await authorized(path, { signal });
  if (!resp.ok) await parse(resp);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
      if (data) {
        try { onEvent(JSON.parse(data)); } catch { /* not JSON: ignore */ }
      }
    }
  }
}
