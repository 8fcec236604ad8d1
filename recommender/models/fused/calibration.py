"""The gate's calibration after training: offsets and shifts chosen on the fit's validation people.

:class:`_GateCalibration` is a part of :class:`~recommender.models.fused.FusedRecommender` (a mixin:
it uses the model's network, inputs and scoring). For people without history it chooses an offset
on the popularity logit, for people with a history an offset per source (coordinate search), then
adds the fixed lifts; for items without interactions it chooses the shift of their scores. Each
validation person's candidate items are scored once, so every offset tried costs a small product
instead of scoring the catalogue again (:meth:`_GateCalibration._calibration_candidates`).
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import torch

from ..base import SCORE_BATCH
from .data import VALIDATION_K, _ndcg, _ndcg_of_hits, _Prepared, _Validation
from .network import NEW_ITEM_CONTENT_SIMILARITY_OFFSET, NEW_ITEM_SHIFT_GRID, SOURCES

logger = logging.getLogger(__name__)

#: Gate calibration: each source's best items per validation person kept as candidates, and the
#: people scored at once while collecting them (see ``_GateCalibration._calibration_candidates``).
CALIBRATION_CANDIDATES = 50
CALIBRATION_BATCH = 256

#: Offsets tried on the popularity logit of people without history after training (30: popularity alone, in
#: effect). None is negative: the gate learnt on training people already trusts the profile more than
#: strangers warrant, and on ~125 validation people a "trust it even more" offset won on noise (second
#: weak-profile draw: -2 and -1 chosen, 0.947x popularity on the test people; see benchmarks/RESULTS.md).
NEW_PERSON_POPULARITY_GRID = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 30.0)

#: Steps of the offsets' coordinate search after training; for people with a short history the
#: popularity offset may also take the larger steps, up to popularity alone in effect (as for
#: people without history).
OFFSET_STEPS = (-1.0, 1.0, -2.0, 2.0)
SHORT_HISTORY_POPULARITY_STEPS = (4.0, 8.0, 30.0)

#: Added after the calibration to the gate logits of people with a history: of the item-item source
#: for histories longer than SHORT_HISTORY items, of the similar-people source for shorter ones.
#: The gate is learnt by the log-likelihood of *all* of a person's hidden items, which favours
#: sources that give every hidden item a fair score; these two score a few items very high (heavy
#: upper tails), which NDCG@10 rewards, so the learnt gate under-weights them (MovieLens-1M warm:
#: the item-item source alone 0.3686 NDCG@10, at the learnt 9 % 0.3556). The calibration's few
#: hundred validation people cannot see gains this small. Replayed on seven data sets x three
#: splits (benchmarks/RESULTS.md, "Tenth stop"): item-item +0.5 gained on 14 of 21 warm and 15 of
#: 20 temporal fits, lost on 4 and 3 (mean +0.0027 and +0.0019 NDCG@10; +1 gained more on average
#: but lost more often); similar people +1 gained on 14 of 21 few-shot fits and lost on 4 (+0.0019;
#: +2 lost 0.010 on MovieLens latest-small). Checked afterwards on an eighth data set (InstEval).
LONG_HISTORY_GATE_LIFT = {"item_item": 0.5}
SHORT_HISTORY_GATE_LIFT = {"similar_people": 1.0}


class _GateCalibration:
    """The calibration methods of :class:`~recommender.models.fused.FusedRecommender`."""

    @torch.no_grad()
    def _calibrate_gate(self, prepared: "_Prepared", steps: Sequence[float] = OFFSET_STEPS,
                        min_gain: float = 0.003) -> None:
        """Correct the gate with offsets chosen on the validation people (NDCG@10).

        On the training users the towers look more reliable than they are for strangers (they
        have seen their items), and the gate learns that optimism. For people without history,
        one offset on the popularity logit is chosen on the held-out new people; its grid reaches
        pure popularity, so the model is never knowingly worse than popularity for them. For
        people with a history, an offset per source is chosen by coordinate search, kept only
        where it gains at least ``min_gain``: for histories of up to :data:`~.network.SHORT_HISTORY` items on
        the few-shot validation people (the popularity offset may reach popularity alone), for
        longer ones on the warm validation people (when one kind is missing, both get the other's). Before
        both, the new-item gate leans on content similarity by a fixed offset, and the shift of
        new items' scores is chosen on every validation person (when the training part has items
        without interactions). After the search, fixed corrections are added for the sources that the
        likelihood-trained gate under-weights (:data:`LONG_HISTORY_GATE_LIFT`,
        :data:`SHORT_HISTORY_GATE_LIFT`).
        """
        net = self._net
        net.cold_item_gate_offset.data[SOURCES.index("content_similarity")] += NEW_ITEM_CONTENT_SIMILARITY_OFFSET
        position = SOURCES.index("popularity")

        candidates = {kind: self._calibration_candidates(prepared.static[entry.users], entry,
                                                         prepared.validation_fixed.get(kind))
                      for kind, entry in prepared.validation.items()}

        def ndcg(kinds: tuple[str, ...]) -> float:
            return float(np.mean([np.mean(self._candidate_ndcg(candidates[kind])) for kind in kinds]))

        if prepared.validation and bool((self._id_mask == 0).any()):
            every_kind = tuple(prepared.validation)
            values = []
            for shift in NEW_ITEM_SHIFT_GRID:
                net.new_item_shift.fill_(shift)
                values.append(ndcg(every_kind))
            best = NEW_ITEM_SHIFT_GRID[int(np.argmax(values))]
            net.new_item_shift.fill_(best)
            self._config["new_item_shift"] = best
            logger.info("fused: new-item shift %.1f (validation NDCG@10 %.4f vs %.4f without)", best, max(values),
                        values[0])

        cold = prepared.validation.get("cold_user")
        if cold is not None:
            grid = list(NEW_PERSON_POPULARITY_GRID)
            values = []
            for offset in grid:
                net.new_person_gate_offset[position] = offset
                values.append(ndcg(("cold_user",)))
            best = grid[int(np.argmax(values))]
            net.new_person_gate_offset[position] = best
            self._config["new_person_popularity_offset"] = best
            logger.info("fused: popularity offset for people without history %.1f (validation NDCG@10 %.4f vs "
                        "%.4f without)", best, max(values), values[grid.index(0.0)])

        def search(offsets: torch.Tensor, kind: str, extra: Mapping[int, Sequence[float]]) -> None:
            """Coordinate search of ``offsets`` (one per source) on NDCG@10 of the ``kind`` validation people."""
            current = start = ndcg((kind,))
            for source in range(len(SOURCES)):
                best_offset, best_value = 0.0, current
                for offset in (*steps, *extra.get(source, ())):
                    offsets[source] = offset
                    value = ndcg((kind,))
                    if value > best_value + min_gain:
                        best_offset, best_value = offset, value
                offsets[source] = best_offset
                current = best_value
            logger.info("fused: gate offsets for %s validation people %s (NDCG@10 %.4f vs %.4f)", kind,
                        [float(v) for v in offsets.cpu()], current, start)

        # Short histories first: the warm validation people with one to SHORT_HISTORY items shown
        # then already have theirs.
        short, long = net.short_history_gate_offset, net.history_gate_offset
        if "few_shot" in prepared.validation:
            search(short, "few_shot", {position: SHORT_HISTORY_POPULARITY_STEPS})
        if "warm" in prepared.validation:
            search(long, "warm", {})
        if "few_shot" not in prepared.validation:
            short.copy_(long)
        elif "warm" not in prepared.validation:
            long.copy_(short)
        for offsets, lift in ((long, LONG_HISTORY_GATE_LIFT), (short, SHORT_HISTORY_GATE_LIFT)):
            for source, value in lift.items():
                offsets[SOURCES.index(source)] += value
        self._config["history_gate_offset"] = [float(v) for v in long.cpu()]
        self._config["short_history_gate_offset"] = [float(v) for v in short.cpu()]

    @torch.no_grad()
    def _calibration_candidates(self, static: np.ndarray, entry: "_Validation",
                                fixed: list[dict[str, torch.Tensor]] | None = None,
                                per_source: int = CALIBRATION_CANDIDATES) -> dict:
        """What the gate calibration needs to rescore validation people cheaply under other gate offsets.

        The offsets change only the gate, not the sources' standardised scores ``z``, so the
        ``z`` of each person's candidates are computed once: the union of every source's
        ``per_source`` best items (seen items excluded), with each source's ``per_source``-th
        value as a bound. An item outside the candidates scores at most ``T * g . bound``; when
        the 10th best candidate beats that, the candidates' top 10 is the catalogue's top 10
        exactly (:meth:`_candidate_ndcg` checks it per person and rescores the others fully).

        ``fixed``: the fixed sources' scores that validation kept for these people (per chunk of
        ``SCORE_BATCH``, see :meth:`_validate`), used instead of scoring them again when complete.
        """
        net, device = self._net, self._device
        if fixed is not None and len(fixed) * SCORE_BATCH < len(entry.users):
            fixed = None
        width = min(int(per_source), net.n_items)
        # Items without interactions are scored with the new-item gate, whose bound leans on the
        # heavy-tailed content similarity and rarely proves a top 10 exact: when they are few, all
        # of them are candidates, so the bound is needed for the other items only.
        cold_items = torch.nonzero(self._id_mask == 0).squeeze(1)
        cold_complete = len(cold_items) <= width * len(SOURCES)
        parts: list[dict] = []
        # Batches never straddle two of validation's kept chunks. Each stacks every source's scores
        # of the whole catalogue: at most SCORE_CHUNK_FLOATS of them (53 people at 100,000 items).
        batch = min(CALIBRATION_BATCH, self._catalogue_rows(per_item=len(SOURCES)))
        starts = sorted({*range(0, len(entry.users), batch), *range(0, len(entry.users), SCORE_BATCH)})
        for start, stop in zip(starts, starts[1:] + [len(entry.users)]):
            statistics: dict = {}
            kept = None
            if fixed is not None:
                chunk, offset = divmod(start, SCORE_BATCH)
                kept = {name: value[offset:offset + stop - start] for name, value in fixed[chunk].items()}
            _, scores = net.source_scores(*self._inputs(static[start:stop], entry.behaviour[start:stop],
                                                        entry.history[start:stop], neighbours=kept is None),
                                          self._content, self._id_mask, statistics=statistics, fixed=kept)
            z = torch.stack([scores[source] for source in SOURCES], dim=1)              # (b, S, n_items)
            del scores
            seen = torch.from_numpy(entry.history[start:stop].toarray() > 0).to(device)
            # In place: the seen items' z are never read again (they are invalid candidates, set to 0).
            top = z.masked_fill_(seen[:, None, :], float("-inf")).topk(width, dim=2)
            items = top.indices.reshape(stop - start, -1)                               # (b, S * width)
            if cold_complete and len(cold_items):
                items = torch.cat([items, cold_items.expand(stop - start, -1)], dim=1)
            items, _ = items.sort(dim=1)
            invalid = seen.gather(1, items)
            invalid[:, 1:] |= items[:, 1:] == items[:, :-1]                              # duplicates
            relevant = torch.from_numpy(entry.relevant[start:stop].toarray() > 0).to(device)
            parts.append({
                "gate_logits": statistics["gate_logits"], "has_history": statistics["has_history"],
                "short_history": statistics["short_history"], "unavailable": statistics["unavailable"],
                "z": z.gather(2, items[:, None, :].expand(-1, len(SOURCES), -1)).masked_fill(invalid[:, None, :], 0.0),
                "items": items, "invalid": invalid, "cold": self._id_mask[items] == 0,
                # -inf: the source had fewer unseen items than ``width``, so all of them are candidates.
                "bound": torch.nan_to_num(top.values[:, :, -1], neginf=-1e30),
                "hits": relevant.gather(1, items), "n_relevant": relevant.sum(dim=1)})
        merged = {name: torch.cat([part[name] for part in parts]) for name in parts[0]} if parts else {}
        return {**merged, "static": static, "entry": entry, "cold_complete": cold_complete}

    @torch.no_grad()
    def _candidate_ndcg(self, candidates: dict) -> np.ndarray:
        """NDCG@10 per validation person under the current gate offsets (see :meth:`_calibration_candidates`)."""
        entry = candidates["entry"]
        if not len(entry.users):
            return np.zeros(0)
        net = self._net
        gate = net.gate_from_logits(candidates["gate_logits"], candidates["has_history"], candidates["short_history"],
                                    candidates["unavailable"])
        cold_gate = net.cold_gate(gate)
        z = candidates["z"]
        scores = torch.where(candidates["cold"], torch.einsum("bs,bsc->bc", cold_gate, z) * net.temperature
                             + net.new_item_shift, torch.einsum("bs,bsc->bc", gate, z) * net.temperature)
        scores = scores.masked_fill(candidates["invalid"], float("-inf"))
        k = min(VALIDATION_K, net.n_items)
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        # Beyond the candidates no item outscores this bound (with every item without interactions
        # among the candidates, only items with interactions are beyond them).
        bound = net.temperature * (gate * candidates["bound"]).sum(dim=1)
        if not candidates["cold_complete"]:
            bound = torch.maximum(bound, net.temperature * (cold_gate * candidates["bound"]).sum(dim=1)
                                  + net.new_item_shift)
        exact = (top.values[:, -1] > bound) & torch.isfinite(top.values[:, -1]) & (scores.shape[1] >= k)
        hits = (candidates["hits"].gather(1, top.indices) & torch.isfinite(top.values)).cpu().numpy()
        values = _ndcg_of_hits(hits, candidates["n_relevant"].cpu().numpy())
        rows = np.flatnonzero(~exact.cpu().numpy())
        if len(rows):   # the top 10 may hold an item outside the candidates: score those people fully
            full = self._score_arrays(candidates["static"][rows], entry.behaviour[rows], entry.history[rows])
            values[rows] = _ndcg(full, entry.history[rows], entry.relevant[rows])
        return values
