// The catalogue, the UI's home for everyone: a grid of posters from
// GET /api/catalogue (no token needed), a search box, a sort menu and
// "Load more". Signed-in admins also see signed videos, marked private,
// and may delete from the card.
import { describeLadder, formatDuration } from './format.js';
import { api, describeApiError, signedIn } from './session.js';

const PER_PAGE = 24;
const SEARCH_DELAY_MS = 250;

export function showCatalogue(app) {
  app.replaceChildren(document.getElementById('catalogue-template').content.cloneNode(true));
  const params = new URLSearchParams(location.search);
  const search = document.getElementById('catalogue-search');
  const sort = document.getElementById('catalogue-sort');
  const more = document.getElementById('catalogue-more');
  search.value = params.get('q') ?? '';
  if (['newest', 'title', 'duration'].includes(params.get('sort'))) sort.value = params.get('sort');
  let page = 1;
  // Answers to an older query that arrive late are dropped.
  let generation = 0;

  const load = async (append) => {
    const asked = ++generation;
    const query = new URLSearchParams({ sort: sort.value, page: String(page), per_page: String(PER_PAGE) });
    if (search.value.trim()) query.set('q', search.value.trim());
    let body;
    try {
      body = await api('GET', `/api/catalogue?${query}`);
    } catch (error) {
      if (asked !== generation) return;
      showMessage(`The catalogue could not be loaded: ${describeApiError(error)}`, true);
      return;
    }
    if (asked !== generation) return;
    const list = document.getElementById('video-list');
    const cards = body.videos.map(videoCard);
    if (append) list.append(...cards);
    else list.replaceChildren(...cards);
    more.hidden = body.page >= body.pages;
    document.getElementById('catalogue-count').textContent =
      body.total === 0 ? '' : `${body.total} video${body.total === 1 ? '' : 's'}`;
    document.getElementById('catalogue-empty').hidden = !(body.total === 0 && !body.q);
    showMessage(body.total === 0 && body.q ? `No video title contains “${body.q}”.` : null);
  };
  const reload = () => {
    page = 1;
    const shown = new URLSearchParams();
    if (search.value.trim()) shown.set('q', search.value.trim());
    if (sort.value !== 'newest') shown.set('sort', sort.value);
    history.replaceState(null, '', shown.size ? `/?${shown}` : '/');
    load(false);
  };
  let timer = null;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(reload, SEARCH_DELAY_MS);
  });
  document.getElementById('catalogue-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(timer);
    reload();
  });
  sort.addEventListener('change', reload);
  more.addEventListener('click', () => {
    page += 1;
    load(true);
  });
  load(false);
}

function showMessage(text, isError = false) {
  const message = document.getElementById('library-message');
  message.hidden = !text;
  message.textContent = text ?? '';
  message.classList.toggle('error', isError);
}

function videoCard(video) {
  const card = document.getElementById('video-card-template').content.firstElementChild.cloneNode(true);
  const watchUrl = `/?v=${encodeURIComponent(video.id)}`;
  card.dataset.videoId = video.id;
  const link = card.querySelector('.poster-link');
  link.href = watchUrl;
  const poster = card.querySelector('.poster');
  // A private video's poster needs a signed URL: a signed-in admin's card
  // asks for a short-lived one (POST /api/tokens); without one the card
  // says private instead of asking for an image it would be refused.
  if (video.poster) poster.src = video.poster;
  else poster.classList.add('missing');
  if (video.private && signedIn()) {
    api('POST', '/api/tokens', { video: video.id, ttl: '10m', file: 'thumbs/poster.jpg' })
      .then((minted) => {
        poster.classList.remove('missing');
        poster.src = minted.path;
      })
      .catch(() => {
        // A read-only token cannot sign: the card stays dark, marked private.
      });
  }
  poster.addEventListener('error', () => poster.classList.add('missing'));
  card.querySelector('.private').hidden = !video.private;
  const duration = formatDuration(Math.round(video.duration_seconds));
  card.querySelector('.duration').textContent = duration;
  const title = card.querySelector('.title');
  title.href = watchUrl;
  title.textContent = video.title || video.id;
  link.setAttribute('aria-label', `${video.title || video.id}, ${duration}${video.private ? ', private' : ''}`);
  const heights = video.ladder.map((rung) => ({ kind: 'video', width: rung.width, height: rung.height }));
  const published = video.published_at ? new Date(video.published_at) : null;
  card.querySelector('.meta').textContent = [
    describeLadder(heights),
    published ? published.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' }) : '',
  ]
    .filter(Boolean)
    .join(' · ');
  const remove = card.querySelector('.delete');
  remove.hidden = !signedIn();
  remove.setAttribute('aria-label', `Delete ${video.title || video.id}`);
  remove.addEventListener('click', async () => {
    if (!confirm(`Delete "${video.title || video.id}"? Viewers lose it at once.`)) return;
    try {
      await api('DELETE', `/api/videos/${encodeURIComponent(video.id)}`);
      card.remove();
    } catch (error) {
      alert(`could not delete: ${describeApiError(error)}`);
    }
  });
  return card;
}
