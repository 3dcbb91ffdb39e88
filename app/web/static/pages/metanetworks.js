// The catalog: every metanetwork the caller can ask (built-ins, then the caller's own), each
// as a card with its test metrics beside its baseline, its coverage and its domain.
import { api } from '../api.js';
import { el, errorBox, link } from '../format.js';
import { cardFacts, domainFacts, facts, metricsChart, trainForm } from './metanetwork.js';

export async function render(root) {
  root.append(el('h1', null, 'Metanetworks'),
    el('p', null, 'Networks that read other networks\u2019 weights: what class a network is, or how well it will generalize. Each was measured on held-out networks of its zoo.'));
  let list;
  try {
    list = await api('/v1/metanetworks');
  } catch (err) {
    root.append(errorBox(err));
    return undefined;
  }
  const grid = el('div', { class: 'ws-cards' });
  root.append(grid);
  if (!list.length) grid.append(el('p', { class: 'muted' }, 'No metanetworks yet.'));
  const details = await Promise.all(list.map((m) => api(`/v1/metanetworks/${encodeURIComponent(m.name)}`).catch((err) => ({ ...m, error: err }))));
  for (const detail of details) {
    const id = `mn-${detail.name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const card = el('article', { class: 'ws-card', 'aria-labelledby': id, 'data-metanetwork': detail.name });
    card.append(el('h2', { id }, link(`#/metanetworks/${encodeURIComponent(detail.name)}`, detail.name),
      ' ', el('span', { class: 'badge' }, detail.builtin ? 'built in' : 'yours')));
    if (detail.error) card.append(errorBox(detail.error));
    card.append(facts(cardFacts(detail)));
    metricsChart(card, detail, { compact: true });
    card.append(el('details', null, el('summary', null, 'Domain: the networks it reads'), facts(domainFacts(detail.domain))));
    grid.append(card);
  }
  root.append(trainForm());
  return undefined;
}
