import { api } from '../api.js';
import { el, errorBox } from '../format.js';
import { predictionCard } from '../predict_view.js';

export async function render(root, params) {
  root.append(el('h1', null, `Prediction #${params.id}`));
  try {
    const p = await api(`/v1/predictions/${encodeURIComponent(params.id)}`);
    root.append(predictionCard(p, { heading: 'h2', showCheckpoint: true }));
    if (p.timings && Object.keys(p.timings).length) {
      root.append(el('h2', null, 'Timings'), el('pre', { class: 'json' }, JSON.stringify(p.timings, null, 2)));
    }
  } catch (err) {
    root.append(errorBox(err));
  }
}
