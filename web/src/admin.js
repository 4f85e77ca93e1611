// The admin pages (`/?admin=jobs|videos|tokens|keys|cluster`), for signed-in
// admins: ingest jobs (state, progress, failure details folded away,
// retry and cancel), videos (edit the title and description, change who
// may watch — public or signed —, delete),
// admin API tokens (create with a scope, revoke), signing keys (create,
// retire) and, when the server is in a cluster, its nodes (health, load,
// region, sessions, egress, edges' cache hit ratio, the node answering
// marked as "this node"). Everything goes through the admin API with the token of the
// sign-in; a token without the scope an action needs is told so in words.
// Changes that cannot be undone ask for a second click in place rather
// than through a browser dialog.
import { formatDuration } from './format.js';
import { api, describeApiError, signedIn } from './session.js';
import { firstSentence, withoutPaths } from './upload.js';

const TABS = ['jobs', 'videos', 'tokens', 'keys', 'cluster'];
const CLUSTER_POLL_MS = 2000;
const JOBS_POLL_MS = 2000;

export function showAdmin(app) {
  app.replaceChildren(document.getElementById('admin-template').content.cloneNode(true));
  const params = new URLSearchParams(location.search);
  const tab = TABS.includes(params.get('admin')) ? params.get('admin') : 'jobs';
  document.getElementById('admin-signin').hidden = signedIn();
  document.getElementById('admin-tabs').hidden = !signedIn();
  if (!signedIn()) return;
  for (const link of document.querySelectorAll('#admin-tabs [data-tab]')) {
    if (link.dataset.tab === tab) link.setAttribute('aria-current', 'page');
  }
  revealClusterLink(tab);
  const body = document.getElementById('admin-body');
  const show = { jobs: showJobs, videos: showVideos, tokens: showTokens, keys: showKeys, cluster: showCluster }[tab];
  body.replaceChildren(document.getElementById(`admin-${tab}-template`).content.cloneNode(true));
  document.title = `${document.getElementById(`${tab}-heading`).textContent} · Admin · kinema`;
  show();
}

function showMessage(text, isError = false) {
  const message = document.getElementById('admin-message');
  if (!message) return;
  message.hidden = !text;
  message.textContent = text ?? '';
  message.classList.toggle('error', isError);
}

/** What went wrong, in the admin pages' words. */
function explain(error) {
  if (error.status === 403) return 'your token may not do this: it needs the admin scope (tokens, keys) or write (videos, jobs)';
  return describeApiError(error);
}

function when(unixSeconds) {
  if (!unixSeconds) return '';
  return new Date(unixSeconds * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function element(tag, properties = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (name === 'dataset') Object.assign(made.dataset, value);
    else if (name in made) made[name] = value;
    else made.setAttribute(name, value);
  }
  made.append(...children);
  return made;
}

/**
 * A button that asks again in place: the first click shows "`question`
 * [confirm] [Keep]", the confirm button runs `action`.
 */
function confirmingButton(label, { question, confirm, ariaLabel, danger = true }, action) {
  const holder = element('span', { className: 'confirming' });
  const first = element('button', { type: 'button', className: danger ? 'secondary danger' : 'secondary', textContent: label, 'aria-label': ariaLabel });
  const ask = element('span', { className: 'ask', hidden: true });
  const yes = element('button', { type: 'button', className: danger ? 'danger-strong' : '', textContent: confirm });
  const no = element('button', { type: 'button', className: 'secondary', textContent: 'Keep' });
  ask.append(element('span', { textContent: question }), yes, no);
  first.addEventListener('click', () => {
    first.hidden = true;
    ask.hidden = false;
    no.focus();
  });
  no.addEventListener('click', () => {
    ask.hidden = true;
    first.hidden = false;
    first.focus();
  });
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await action();
    } finally {
      // Asked and answered: back to the first button (a failed action
      // says why elsewhere, and may be tried again from there).
      yes.disabled = false;
      ask.hidden = true;
      first.hidden = false;
    }
  });
  holder.append(first, ask);
  return holder;
}

// ------------------------------------------------------------------ jobs

function showJobs() {
  const list = document.getElementById('jobs-list');
  const refresh = async () => {
    if (!list.isConnected) return;
    try {
      const { jobs } = await api('GET', '/api/jobs');
      showMessage(null);
      renderJobs(list, jobs);
    } catch (error) {
      showMessage(`The jobs could not be loaded: ${explain(error)}`, true);
    }
    if (list.isConnected) setTimeout(refresh, JOBS_POLL_MS);
  };
  refresh();
}

function renderJobs(list, jobs) {
  document.getElementById('jobs-empty').hidden = jobs.length > 0;
  const kept = new Map([...list.children].map((item) => [item.dataset.jobId, item]));
  const items = jobs.map((job) => {
    const item = kept.get(job.id) ?? jobItem(job);
    updateJob(item, job);
    return item;
  });
  // Re-appended in order; an item with its details open keeps them.
  list.replaceChildren(...items);
}

function jobItem(job) {
  const item = element('li', { className: 'admin-item job', dataset: { jobId: job.id } });
  const progress = element('div', { className: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' },
    element('div', { className: 'progress-bar' }));
  const details = element('details', { className: 'job-details' },
    element('summary', { textContent: 'Details' }), element('pre'));
  // The log tail is asked for when the details are opened.
  details.addEventListener('toggle', async () => {
    if (!details.open) return;
    try {
      const { job: full } = await api('GET', `/api/jobs/${encodeURIComponent(job.id)}`);
      details.querySelector('pre').textContent = withoutPaths([full.error, ...(full.log_tail ?? [])].filter(Boolean).join('\n'));
    } catch (error) {
      details.querySelector('pre').textContent = `The details could not be loaded: ${explain(error)}`;
    }
  });
  const cancel = element('button', { type: 'button', className: 'secondary job-cancel', textContent: 'Cancel' });
  const retry = element('button', { type: 'button', className: 'job-retry', textContent: 'Retry' });
  const act = (button, verb) => button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const { job: changed } = await api('POST', `/api/jobs/${encodeURIComponent(job.id)}/${verb}`);
      updateJob(item, changed);
    } catch (error) {
      showMessage(`The job could not be ${verb === 'cancel' ? 'cancelled' : 'retried'}: ${explain(error)}`, true);
    } finally {
      button.disabled = false;
    }
  });
  act(cancel, 'cancel');
  act(retry, 'retry');
  item.append(
    element('div', { className: 'admin-item-head' },
      element('strong', { className: 'job-title' }),
      element('span', { className: 'state' })),
    progress,
    element('span', { className: 'meta job-meta' }),
    element('p', { className: 'job-failure' }),
    details,
    element('div', { className: 'actions' }, cancel, retry),
  );
  return item;
}

function updateJob(item, job) {
  const name = job.title || job.video_id;
  item.dataset.state = job.state;
  item.querySelector('.job-title').textContent = name;
  const state = item.querySelector('.state');
  state.textContent = job.state;
  state.className = `state state-${job.state}`;
  const active = job.state === 'queued' || job.state === 'running';
  const percent = Math.round(job.progress?.percent ?? (job.state === 'done' ? 100 : 0));
  const progress = item.querySelector('.progress');
  progress.hidden = !active;
  progress.setAttribute('aria-valuenow', String(percent));
  progress.setAttribute('aria-label', `Progress of ${name}`);
  item.querySelector('.progress-bar').style.width = `${percent}%`;
  const stage = job.progress?.stage && job.progress.stage !== job.state ? `${job.progress.stage} ${percent}%` : '';
  const eta = active && job.progress?.eta_seconds > 0 ? `about ${formatDuration(Math.ceil(job.progress.eta_seconds))} left` : '';
  item.querySelector('.job-meta').textContent = [
    job.video_id,
    active ? stage : '',
    eta,
    job.attempts > 1 ? `attempt ${job.attempts}` : '',
    `updated ${when(job.updated_at_unix)}`,
  ].filter(Boolean).join(' · ');
  const failure = item.querySelector('.job-failure');
  failure.hidden = job.state !== 'failed';
  failure.textContent = job.state === 'failed' ? `Failed: ${firstSentence(job.error ?? 'no reason given')}.` : '';
  item.querySelector('.job-details').hidden = job.state !== 'failed';
  const cancel = item.querySelector('.job-cancel');
  const retry = item.querySelector('.job-retry');
  cancel.hidden = !active;
  retry.hidden = !(job.state === 'failed' || job.state === 'cancelled');
  cancel.setAttribute('aria-label', `Cancel ${name}`);
  retry.setAttribute('aria-label', `Retry ${name}`);
}

// ---------------------------------------------------------------- videos

async function showVideos() {
  const list = document.getElementById('videos-list');
  let videos;
  try {
    ({ videos } = await api('GET', '/api/videos'));
  } catch (error) {
    showMessage(`The videos could not be loaded: ${explain(error)}`, true);
    return;
  }
  videos.sort((a, b) => (b.published_at_unix ?? 0) - (a.published_at_unix ?? 0));
  document.getElementById('videos-empty').hidden = videos.length > 0;
  list.replaceChildren(...videos.map(videoItem));
}

function videoItem(video) {
  const item = element('li', { className: 'admin-item video', dataset: { videoId: video.id } });
  const title = element('a', { className: 'video-title', href: `/?v=${encodeURIComponent(video.id)}` });
  const description = element('p', { className: 'video-description' });
  const show = () => {
    title.textContent = video.title || video.id;
    description.textContent = video.description ?? '';
    description.hidden = !video.description;
  };
  show();
  const meta = element('span', {
    className: 'meta',
    textContent: [
      video.id,
      formatDuration(Math.round(video.duration_seconds ?? 0)),
      video.published_at_unix ? `published ${when(video.published_at_unix)}` : '',
    ].filter(Boolean).join(' · '),
  });
  const badge = element('span', { className: 'state video-access-state' });
  const access = element('span', { className: 'video-access' });
  const showAccess = () => {
    const signed = video.access === 'signed';
    item.dataset.access = signed ? 'signed' : 'public';
    badge.textContent = signed ? 'signed (private)' : 'public';
    badge.className = `state video-access-state state-${signed ? 'signed' : 'public'}`;
    access.replaceChildren(accessButton(video, showAccess));
  };
  showAccess();
  const form = editForm(video, (saved) => {
    video.title = saved.title;
    video.description = saved.description;
    show();
  });
  const edit = element('button', { type: 'button', className: 'secondary video-edit', textContent: 'Edit', 'aria-label': `Edit ${video.title || video.id}` });
  edit.addEventListener('click', () => {
    form.hidden = !form.hidden;
    if (!form.hidden) form.querySelector('input').focus();
  });
  const replace = element('a', {
    className: 'button-link secondary',
    href: `/?upload&replace=${encodeURIComponent(video.id)}`,
    textContent: 'Replace…',
    title: 'Upload the new file, then delete this video',
  });
  const remove = confirmingButton('Delete', {
    question: `Delete “${video.title || video.id}”? Viewers lose it at once.`,
    confirm: 'Delete for good',
    ariaLabel: `Delete ${video.title || video.id}`,
  }, async () => {
    try {
      await api('DELETE', `/api/videos/${encodeURIComponent(video.id)}`);
      item.remove();
      showMessage(`Deleted “${video.title || video.id}”.`);
    } catch (error) {
      showMessage(`The video could not be deleted: ${explain(error)}`, true);
    }
  });
  item.append(
    element('div', { className: 'admin-item-head' }, title, badge),
    description,
    meta,
    form,
    element('div', { className: 'actions' }, edit, access, replace, remove),
  );
  return item;
}

/**
 * The control that makes a video signed or public, asking first: the
 * server publishes the same media under new URLs, and the old ones stop
 * playing without a signed link (`changed()` redraws the item).
 */
function accessButton(video, changed) {
  const name = video.title || video.id;
  const signed = video.access === 'signed';
  const label = signed ? 'Make public' : 'Make signed';
  return confirmingButton(label, {
    question: signed
      ? `Make “${name}” public? Anyone with its link can watch it.`
      : `Make “${name}” signed? Its links stop working; viewers need a signed link.`,
    confirm: label,
    ariaLabel: `${label}: ${name}`,
    danger: false,
  }, async () => {
    try {
      const answer = await api('PATCH', `/api/videos/${encodeURIComponent(video.id)}`, {
        access: signed ? 'public' : 'signed',
      });
      video.access = answer.access;
      changed();
      showMessage(answer.access === 'signed'
        ? `“${name}” is signed now: only signed links play it.`
        : `“${name}” is public now: anyone with its link can watch it.`);
    } catch (error) {
      showMessage(`The access of “${name}” could not be changed: ${firstSentence(explain(error))}.`, true);
    }
  });
}

function editForm(video, saved) {
  const id = `edit-${video.id}`;
  const form = element('form', { className: 'edit-form', hidden: true });
  const titleInput = element('input', { id: `${id}-title`, type: 'text', maxLength: 200, required: true, value: video.title ?? '' });
  const descriptionInput = element('textarea', { id: `${id}-description`, maxLength: 5000, rows: 4, value: video.description ?? '' });
  const status = element('span', { className: 'hint', role: 'status' });
  form.append(
    element('label', { htmlFor: titleInput.id, textContent: 'Title' }), titleInput,
    element('label', { htmlFor: descriptionInput.id, textContent: 'Description' }), descriptionInput,
    element('div', { className: 'actions' },
      element('button', { type: 'submit', textContent: 'Save' }),
      element('button', { type: 'button', className: 'secondary edit-cancel', textContent: 'Cancel' }),
      status),
  );
  form.querySelector('.edit-cancel').addEventListener('click', () => {
    form.hidden = true;
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    status.textContent = 'Saving…';
    try {
      const answer = await api('PATCH', `/api/videos/${encodeURIComponent(video.id)}`, {
        title: titleInput.value.trim(),
        description: descriptionInput.value.trim(),
      });
      saved(answer);
      status.textContent = '';
      form.hidden = true;
      showMessage(`Saved “${answer.title}”.`);
    } catch (error) {
      status.textContent = `Not saved: ${explain(error)}`;
    }
  });
  return form;
}

// ---------------------------------------------------------------- tokens

async function showTokens() {
  const rows = document.getElementById('tokens-rows');
  const load = async () => {
    try {
      const { tokens } = await api('GET', '/api/admin-tokens');
      rows.replaceChildren(...tokens.map((token) => tokenRow(token, load)));
    } catch (error) {
      showMessage(`The tokens could not be loaded: ${explain(error)}`, true);
    }
  };
  document.getElementById('token-create').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = document.getElementById('token-name');
    const scope = document.getElementById('token-scope');
    try {
      const query = new URLSearchParams({ name: name.value.trim(), scope: scope.value });
      const created = await api('POST', `/api/admin-tokens?${query}`);
      const secret = document.getElementById('token-secret');
      secret.hidden = false;
      const value = document.getElementById('token-secret-value');
      value.value = created.secret;
      value.select();
      name.value = '';
      showMessage(`Created the token “${created.token.name}” (${created.token.scope}).`);
      await load();
    } catch (error) {
      showMessage(`No token was created: ${explain(error)}`, true);
    }
  });
  document.getElementById('token-secret-copy').addEventListener('click', async () => {
    const value = document.getElementById('token-secret-value');
    value.select();
    await navigator.clipboard?.writeText(value.value).catch(() => {});
  });
  await load();
}

function tokenRow(token, reload) {
  const revoke = confirmingButton('Revoke', {
    question: `Revoke “${token.name}”? Requests with it are refused at once.`,
    confirm: 'Revoke',
    ariaLabel: `Revoke ${token.name}`,
  }, async () => {
    try {
      await api('DELETE', `/api/admin-tokens/${encodeURIComponent(token.name)}`);
      showMessage(`Revoked “${token.name}”.`);
      await reload();
    } catch (error) {
      showMessage(`The token could not be revoked: ${explain(error)}`, true);
    }
  });
  return element('tr', { dataset: { token: token.name } },
    element('th', { scope: 'row', textContent: token.name }),
    element('td', { textContent: token.scope }),
    element('td', { textContent: when(token.created_at_unix) }),
    element('td', { className: 'actions' }, revoke));
}

// ------------------------------------------------------------------ keys

async function showKeys() {
  const rows = document.getElementById('keys-rows');
  const load = async () => {
    try {
      const { keys } = await api('GET', '/api/keys');
      rows.replaceChildren(...keys.map((key) => keyRow(key, load)));
    } catch (error) {
      showMessage(`The keys could not be loaded: ${explain(error)}`, true);
    }
  };
  document.getElementById('key-create').addEventListener('click', async () => {
    try {
      const { key } = await api('POST', '/api/keys');
      showMessage(`Created the key ${key.id}; new signed links use it.`);
      await load();
    } catch (error) {
      showMessage(`No key was created: ${explain(error)}`, true);
    }
  });
  await load();
}

function keyRow(key, reload) {
  const state = key.retired ? 'retired' : key.signing ? 'signing' : 'active';
  const cell = element('td', { className: 'actions' });
  if (!key.retired) {
    cell.append(confirmingButton('Retire', {
      question: `Retire ${key.id}? Links signed with it stop working.`,
      confirm: 'Retire',
      ariaLabel: `Retire key ${key.id}`,
    }, async () => {
      try {
        await api('POST', `/api/keys/${encodeURIComponent(key.id)}/retire`);
        showMessage(`Retired the key ${key.id}.`);
        await reload();
      } catch (error) {
        showMessage(`The key could not be retired: ${explain(error)}`, true);
      }
    }));
  }
  return element('tr', { dataset: { key: key.id, state } },
    element('th', { scope: 'row' }, element('code', { textContent: key.id })),
    element('td', { textContent: when(key.created_at_unix) }),
    element('td', {}, element('span', { className: `state state-${state}`, textContent: state })),
    cell);
}

// --------------------------------------------------------------- cluster

/** Shows the Cluster link only when the server says it is in a cluster. */
async function revealClusterLink(tab) {
  const link = document.getElementById('admin-cluster-link');
  if (!link) return;
  if (tab === 'cluster') {
    link.hidden = false;
    return;
  }
  try {
    const { cluster } = await api('GET', '/api/cluster');
    link.hidden = !cluster;
  } catch {
    link.hidden = true;
  }
}

const HEALTH_WORDS = { ok: 'ok', draining: 'draining', dead: 'dead' };

function showCluster() {
  const rows = document.getElementById('cluster-rows');
  const refresh = async () => {
    if (!rows.isConnected) return;
    try {
      const answer = await api('GET', '/api/cluster');
      showMessage(null);
      renderCluster(rows, answer);
    } catch (error) {
      showMessage(`The cluster could not be loaded: ${explain(error)}`, true);
    }
    if (rows.isConnected) setTimeout(refresh, CLUSTER_POLL_MS);
  };
  refresh();
}

function renderCluster(rows, answer) {
  document.getElementById('cluster-none').hidden = Boolean(answer.cluster);
  rows.closest('table').hidden = !answer.cluster;
  const nodes = answer.nodes ?? [];
  rows.replaceChildren(...nodes.map(clusterRow));
}

function clusterRow(node) {
  const cell = (label, content, className = '') =>
    element('td', { className, dataset: { label } }, content);
  const health = HEALTH_WORDS[node.status] ?? 'unknown';
  const row = element('tr', { dataset: { nodeId: node.node_id, status: health, thisNode: String(Boolean(node.this_node)) } });
  // The node that answered is named as such, not only marked.
  const self = node.this_node ? [' ', element('span', { className: 'state this-node', textContent: 'this node' })] : [];
  const name = element('td', { className: 'node-name' },
    element('span', { textContent: node.node_id }),
    ...self,
    element('br'),
    element('a', { href: node.public_url, className: 'meta', textContent: node.public_url }));
  row.append(
    name,
    cell('Role', node.role),
    cell('Region', node.region ?? '–', 'node-region'),
    cell('Health', element('span', { className: `health health-${health}`, textContent: health })),
    cell('Load', percent(node.status === 'dead' ? null : node.load), 'number'),
    cell('Sessions', node.status === 'dead' ? '–' : String(node.sessions), 'number'),
    cell('Egress', bitrate(node.egress_bps), 'number'),
    cell('Cache hits', cacheText(node), 'number'),
  );
  return row;
}

function percent(share) {
  if (typeof share !== 'number') return '–';
  return `${Math.round(share * 100)}%`;
}

function bitrate(bitsPerSecond) {
  if (typeof bitsPerSecond !== 'number') return '–';
  const units = [['Gbit/s', 1e9], ['Mbit/s', 1e6], ['kbit/s', 1e3]];
  for (const [unit, size] of units) {
    if (bitsPerSecond >= size) return `${(bitsPerSecond / size).toFixed(1)} ${unit}`;
  }
  return `${bitsPerSecond} bit/s`;
}

function cacheText(node) {
  if (node.role !== 'edge' || !node.cache) return '–';
  if (node.cache.error) {
    return element('span', { className: 'cache-error', textContent: `no answer (${node.cache.error})` });
  }
  const ratio = percent(node.cache.hit_ratio);
  const memory = typeof node.cache.memory_bytes === 'number' ? `${formatBytes(node.cache.memory_bytes)} in memory` : '';
  return element('span', {}, ratio, element('br'), element('span', { className: 'meta', textContent: memory }));
}

function formatBytes(bytes) {
  const units = [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]];
  for (const [unit, size] of units) {
    if (bytes >= size) return `${(bytes / size).toFixed(1)} ${unit}`;
  }
  return `${bytes} B`;
}
