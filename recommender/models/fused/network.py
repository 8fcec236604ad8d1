"""The fused model's network: the towers, the six sources and the gate (:class:`_FusedNetwork`)."""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .layers import _columns, _linear, _mean_and_spread, _Mix, _normal, _SparseLinear, _SparseRows, _standardised

#: Sources of the gate, in order.
SOURCES = ("profile", "history", "item_item", "content_similarity", "similar_people", "popularity")

#: Added after training to the content-similarity logit of the new-item gate. For a new item
#: the content tower's parts look better in training than they are (the tower has seen the items
#: with their interactions), while content similarity to the history is as good as in training.
#: On the synthetic data's cold-item splits (two data sets, three splits each) adding 2-6 beat
#: the learnt gate by 0.01-0.05 NDCG@10 when new items are ranked among themselves (the learnt
#: offset itself barely moves from 0). Larger offsets rank new items better among themselves
#: but lift the few catalogue items without interactions into everyone's lists (content
#: similarity z-scores are heavy-tailed): 5.0 cost up to 0.04 NDCG@10 on the warm, temporal and
#: few-shot protocols, so 2.5. A pseudo-new-item validation could not pick it: it shares the
#: tower's optimism.
NEW_ITEM_CONTENT_SIMILARITY_OFFSET = 2.5

#: Scores added to every item without interactions (new items), chosen after training by NDCG@10
#: of all validation people (0 kept unless another value is better). The new-item gate decides
#: how new items are ordered among themselves; this shift decides how far up the whole list they
#: come. Without it the learnt gate over-promoted them: on the synthetic data's warm, temporal and
#: few-shot splits a shift of -2 gained 0.002-0.007 NDCG@10 (the few catalogue items that nobody
#: had picked yet kept entering lists through their content similarity).
NEW_ITEM_SHIFT_GRID = (0.0, -0.5, -1.0, -2.0, -4.0, -8.0)

#: Item features at most this dense (share of non-zero values) go through the content tower's
#: first layer as a sparse (CSR) matrix on the CPU, forward and backward. One-hot categories,
#: brands and tags are sparse: the 100k benchmark's 2,000 x 123 features are 4.6 % non-zero, and
#: their first layer, forward and backward, took 1.6 instead of 5.3 ms a step (a whole step 0.92x).
#: On random matrices the sparse product wins by 2.3x at 5 % non-zero (123 and 300 features), by
#: 2x and 1.15x at 10 %, and loses from 20 % on 300 features (measured on this 2-core CPU).
SPARSE_CONTENT_DENSITY = 0.08

#: People with at most this many history items (and at least one) get their own gate offsets,
#: calibrated on the few-shot validation people (their first three items shown); longer histories
#: get offsets calibrated on the warm validation people. A few first items can say much less than
#: a random share of a long history: on MovieLens-100K (users' first three ratings shown) every
#: history-based model scored below popularity (EASE 0.250, ALS 0.247, the fused model 0.282
#: against 0.333 NDCG@10), while the fused model led on known users (see benchmarks/RESULTS.md,
#: "MovieLens-100K").
SHORT_HISTORY = 5


# ---------------------------------------------------------------------- network
class _FusedNetwork(nn.Module):
    """The towers, the gate and the item side (see the docstring of :mod:`recommender.models.fused`).

    Every source yields one score per item, standardised per person over the catalogue
    (mean 0, standard deviation 1), so the gate weights compare like with like; the final
    score is ``temperature * sum_s gate_s * z_s``.
    """

    def __init__(self, *, n_items: int, n_static: int, n_behaviour: int, n_content: int, dim: int, hidden: int,
                 gate_hidden: int, n_item_item: int, n_content_neighbours: int = 0,
                 similar_people: bool = False, generator: torch.Generator):
        super().__init__()
        self.n_items, self.dim, self.hidden = n_items, dim, hidden
        # History tower: a bag of item embeddings (Mult-DAE encoder), then a projection.
        self.history_embedding = _normal((n_items, hidden), 1.0 / math.sqrt(hidden), generator)
        self.history_bias = nn.Parameter(torch.zeros(hidden))
        self.history_out = _linear(hidden, dim, generator)
        # Profile tower: static profile + behaviour features.
        n_profile = n_static + n_behaviour
        self.profile_hidden = _linear(max(n_profile, 1), hidden, generator, gain=math.sqrt(2))
        self.profile_out = _linear(hidden, dim, generator)
        # Gate over the sources (always all of SOURCES; unavailable ones are masked).
        self.gate_hidden = _linear(2 * hidden + 2, gate_hidden, generator)
        self.gate_out = _linear(gate_hidden, len(SOURCES), generator, gain=0.1)
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(3.0)))  # 1-d: bundles store no 0-d arrays
        # Temperatures of the profile and history sources scored on their own (auxiliary losses).
        self.log_source_temperature = nn.Parameter(torch.full((2,), math.log(3.0)))
        # Added to the gate logits of people without history; calibrated on validation after training.
        self.register_buffer("new_person_gate_offset", torch.zeros(len(SOURCES)))
        # Added to the gate logits of people with a history longer than SHORT_HISTORY items, and of
        # people with a shorter one; calibrated on validation after training.
        self.register_buffer("history_gate_offset", torch.zeros(len(SOURCES)))
        self.register_buffer("short_history_gate_offset", torch.zeros(len(SOURCES)))
        # Added to the gate logits for items without an id vector (new items; id-dropped ones in
        # training), which are scored by their content only; learnt end to end, then corrected
        # towards content similarity after training (see NEW_ITEM_CONTENT_SIMILARITY_OFFSET).
        self.cold_item_gate_offset = nn.Parameter(torch.zeros(len(SOURCES)))
        # Added to the score of every item without an id vector (placement among the items with
        # one); 0 in training, calibrated on validation after training (NEW_ITEM_SHIFT_GRID).
        self.register_buffer("new_item_shift", torch.zeros(1))
        # Item side: id vectors, content tower, popularity prior.
        self.item_embedding = _normal((n_items, dim), 0.01, generator)
        self.register_buffer("log_popularity", torch.zeros(n_items))
        self.n_content = n_content
        # The catalogue's content matrix and its CSR forms, when sparse (see use_sparse_content).
        self._sparse_content: _SparseRows | None = None
        # The catalogue's item vectors at inference, kept while nothing they depend on changes (item_parts).
        self._item_parts_cache: tuple | None = None
        if n_content:
            self.content_hidden = _linear(n_content, hidden, generator, gain=math.sqrt(2))
            self.content_out = _linear(hidden, dim, generator)
            # Popularity of a new item: a ridge regression of log(1 + count) on content (fixed).
            self.register_buffer("content_popularity_weight", torch.zeros(n_content))
            self.register_buffer("content_popularity_bias", torch.zeros(1))
        # Content kNN: each item's most similar items by content (cosine of the features, fixed).
        self.n_content_neighbours = n_content_neighbours if n_content else 0
        self.similar_people = bool(similar_people)
        if self.n_content_neighbours:
            self.register_buffer("content_neighbours", torch.zeros(n_items, n_content_neighbours, dtype=torch.long))
            self.register_buffer("content_neighbour_similarity", torch.zeros(n_items, n_content_neighbours))
        # Closed-form item-item component (fixed weights, computed before training).
        self.n_item_item = n_item_item
        if n_item_item:
            self.register_buffer("item_item_weights", torch.zeros(n_item_item, n_item_item))
            self.register_buffer("item_item_items", torch.zeros(n_item_item, dtype=torch.long))
            self.register_buffer("item_item_position", torch.full((n_items,), -1, dtype=torch.long))

    def __getstate__(self) -> dict:
        """Copies and pickles leave the kept catalogue vectors behind (they are recomputed on use)."""
        return {**self.__dict__, "_item_parts_cache": None}

    @property
    def temperature(self) -> torch.Tensor:
        return torch.exp(self.log_temperature)

    @property
    def source_temperature(self) -> torch.Tensor:
        return torch.exp(self.log_source_temperature)

    # -- item side --------------------------------------------------------------
    def use_sparse_content(self, content: torch.Tensor | None) -> bool:
        """Give the content tower this content matrix (the catalogue's) in CSR form when it is sparse.

        At most ``SPARSE_CONTENT_DENSITY`` non-zero and on the CPU (dense products are fast on a
        GPU, and MPS has no sparse CSR), the first layer then multiplies the CSR matrix whenever
        :meth:`content_vectors` is given this very tensor (the same values up to rounding). Returns
        whether it does.
        """
        self._sparse_content = None
        if content is None or not self.n_content or content.device.type != "cpu" or not content.numel():
            return False
        if int(torch.count_nonzero(content)) > SPARSE_CONTENT_DENSITY * content.numel():
            return False
        self._sparse_content = _SparseRows(content)
        return True

    def content_vectors(self, content: torch.Tensor) -> torch.Tensor:
        """The content tower: vectors (n, dim) of items described by ``content`` (needs item features)."""
        sparse = self._sparse_content
        if sparse is not None and content is sparse.dense:
            hidden = _SparseLinear.apply(self.content_hidden.weight, self.content_hidden.bias, sparse.matrix,
                                         sparse.transposed)
        else:
            hidden = self.content_hidden(content)
        return self.content_out(torch.relu(hidden))

    def item_parts(self, content: torch.Tensor | None, id_mask: torch.Tensor, index: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Collaborative and content vectors of every item (or of ``index``).

        ``content`` (n, n_content) and ``id_mask`` (n,) describe the items returned.

        Returns
        -------
        collaborative : (n, dim)  ``E_i`` (zero where ``id_mask`` is 0: new items)
        content : (n, dim)        ``C(content_i)`` (zeros without item features)
        """
        # Every request for new people and every validation chunk scores the same catalogue with the
        # same weights: outside training, the vectors of the whole catalogue are kept and reused
        # until a tensor they depend on is replaced or changed in place (its version counter moves).
        key = None
        if index is None and not self.training and not torch.is_grad_enabled():
            tensors = [id_mask, self.item_embedding]
            if self.n_content:
                tensors += [content, self.content_hidden.weight, self.content_hidden.bias, self.content_out.weight,
                            self.content_out.bias]
            key = tuple((id(t), t._version) for t in tensors)
            cached = self._item_parts_cache
            if cached is not None and cached[0] == key:
                return cached[1]
        embedding = self.item_embedding if index is None else self.item_embedding[index]
        collaborative = embedding * id_mask[:, None]
        content_vectors = self.content_vectors(content) if self.n_content else torch.zeros_like(collaborative)
        # The tensors themselves are kept with the key, so no id in it can be reused by another tensor.
        self._item_parts_cache = None if key is None else (key, (collaborative, content_vectors), tensors)
        return collaborative, content_vectors

    def item_popularity(self, content: torch.Tensor | None, id_mask: torch.Tensor,
                        index: torch.Tensor | None = None) -> torch.Tensor:
        """Popularity prior (n,) of every item (or of ``index``): log training frequency, or predicted
        from content where ``id_mask`` is 0."""
        log_popularity = self.log_popularity if index is None else self.log_popularity[index]
        return id_mask * log_popularity + (1 - id_mask) * self.predicted_popularity(content, len(id_mask))

    def predicted_popularity(self, content: torch.Tensor | None, n: int) -> torch.Tensor:
        """Popularity (n,) predicted from the content of ``n`` items (zeros without item features)."""
        if self.n_content:
            return content @ self.content_popularity_weight + self.content_popularity_bias
        return self.log_popularity.new_zeros(n)

    def new_item_parts(self, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Content vectors (m, dim) and predicted popularity (m,) of brand-new items described by ``content``."""
        m = content.shape[0]
        vectors = self.content_vectors(content) if self.n_content else content.new_zeros(m, self.dim)
        return vectors, self.predicted_popularity(content, m)

    # -- user side --------------------------------------------------------------
    def user_parts(self, profile: torch.Tensor, items: torch.Tensor, offsets: torch.Tensor,
                   n_history: torch.Tensor, statistics: dict | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate, profile vector and history vector of a batch of people.

        Parameters
        ----------
        profile : (n, n_static + n_behaviour) float
        items : (nnz,) long
            History items of all people, grouped by person.
        offsets : (n,) long
            Start of each person's items in ``items``.
        n_history : (n,) float
            History length of each person.

        Returns
        -------
        gate : (n, len(SOURCES))
        profile_vector, history_vector : (n, dim)
        """
        n = profile.shape[0]
        weights = torch.rsqrt(torch.clamp(n_history, min=1.0))
        per_item = torch.repeat_interleave(weights, n_history.long(), output_size=items.shape[0])
        bag = F.embedding_bag(items, self.history_embedding, offsets, mode="sum", per_sample_weights=per_item)
        has_history = (n_history > 0).to(profile.dtype)
        history_hidden = torch.tanh(bag + self.history_bias) * has_history[:, None]
        history_vector = self.history_out(history_hidden)
        if profile.shape[1]:
            profile_hidden = torch.relu(self.profile_hidden(profile))
        else:
            profile_hidden = torch.relu(self.profile_hidden.bias).expand(n, -1)
        profile_vector = self.profile_out(profile_hidden)
        gate_input = torch.cat([history_hidden, profile_hidden, torch.log1p(n_history)[:, None],
                                has_history[:, None]], dim=1)
        gate_logits = self.gate_out(torch.tanh(self.gate_hidden(gate_input)))
        # Sources a person cannot have get exactly zero weight.
        unavailable = torch.zeros_like(gate_logits, dtype=torch.bool)
        no_history = (has_history == 0)[:, None]
        unavailable[:, 1:2] = no_history
        unavailable[:, 2:3] = no_history if self.n_item_item else True
        unavailable[:, 3:4] = no_history if self.n_content_neighbours else True
        unavailable[:, 4:5] = not self.similar_people
        short = has_history * (n_history <= SHORT_HISTORY).to(profile.dtype)
        if statistics is not None:
            statistics.update(gate_logits=gate_logits, has_history=has_history, short_history=short,
                              unavailable=unavailable)
        return (self.gate_from_logits(gate_logits, has_history, short, unavailable), profile_vector,
                history_vector)

    def gate_from_logits(self, gate_logits: torch.Tensor, has_history: torch.Tensor, short_history: torch.Tensor,
                         unavailable: torch.Tensor) -> torch.Tensor:
        """The gate (n, S) from the gate network's logits: calibrated offsets added, unavailable sources off.

        ``has_history`` and ``short_history`` (1 for people with 1 to :data:`SHORT_HISTORY`
        history items) choose which of the three calibrated offsets a person gets.
        """
        gate_logits = (gate_logits + (1 - has_history)[:, None] * self.new_person_gate_offset
                       + (has_history - short_history)[:, None] * self.history_gate_offset
                       + short_history[:, None] * self.short_history_gate_offset)
        return torch.softmax(gate_logits.masked_fill(unavailable, float("-inf")), dim=1)

    def cold_gate(self, gate: torch.Tensor) -> torch.Tensor:
        """The gate (n, S) for items without an id vector: ``softmax(log g + b)`` over the available sources."""
        cold_logits = torch.log(gate.clamp(min=1e-30)) + self.cold_item_gate_offset
        return torch.softmax(cold_logits.masked_fill(gate == 0, float("-inf")), dim=1)

    def item_item_scores(self, items: torch.Tensor, n_history: torch.Tensor, index: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """Raw EASE scores (n, n_items), or (n, len(index)): 0 for the items the item-item matrix does not cover.

        Each row is a bag of rows of B over the person's covered history items (the others are skipped).
        """
        n = n_history.shape[0]
        position = self.item_item_position[items]
        known = position >= 0
        owner = torch.repeat_interleave(torch.arange(n, device=items.device), n_history.long(),
                                        output_size=items.shape[0])
        counts = torch.zeros(n, dtype=torch.long, device=items.device)
        counts.index_add_(0, owner[known], torch.ones_like(owner[known]))
        item_item = F.embedding_bag(position[known], self.item_item_weights, torch.cumsum(counts, 0) - counts,
                                    mode="sum")
        if index is None and self.n_item_item == self.n_items:
            return item_item  # covers the whole catalogue in index order
        position = self.item_item_position if index is None else self.item_item_position[index]
        covered = (position >= 0).to(item_item.dtype)
        return item_item.index_select(1, position.clamp(min=0)).mul_(covered)

    def content_similarity_scores(self, items: torch.Tensor, n_history: torch.Tensor,
                                  index: torch.Tensor | None = None) -> torch.Tensor:
        """Content kNN scores: each item's summed similarity to the history items whose neighbour it is.

        Returns (n, n_items), or (n, len(index)) (built for those columns only: a sampled
        softmax over a large catalogue never touches a full-catalogue row); a person without
        history gets zeros.
        """
        n = n_history.shape[0]
        owner = torch.repeat_interleave(torch.arange(n, device=items.device), n_history.long(),
                                        output_size=items.shape[0])
        neighbours = self.content_neighbours[items]                    # (nnz, k)
        values = self.content_neighbour_similarity[items]
        width = self.n_items
        if index is not None:
            width = index.shape[0]
            lookup = torch.full((self.n_items,), -1, dtype=torch.long, device=items.device)
            lookup[index] = torch.arange(width, device=items.device)
            neighbours = lookup[neighbours]
            kept = neighbours >= 0
            flat = (owner[:, None] * width + neighbours)[kept]
            values = values[kept]
        else:
            flat = (owner[:, None] * width + neighbours).reshape(-1)
            values = values.reshape(-1)
        scores = torch.zeros(n * width, device=items.device, dtype=values.dtype).index_add_(0, flat, values)
        return scores.view(n, width)

    def new_item_neighbour_similarity(self, content: torch.Tensor, new_item_content: torch.Tensor,
                                      items: torch.Tensor | None = None) -> torch.Tensor:
        """Similarity (len(items) or n_items, m) of catalogue items to brand-new items, where the new
        item would be among the catalogue item's content neighbours (at least as similar as its
        last kept neighbour), else 0."""
        unit = F.normalize(content if items is None else content[items], dim=1)
        similarity = unit @ F.normalize(new_item_content, dim=1).T
        last_kept = self.content_neighbour_similarity[:, -1:] if items is None else \
            self.content_neighbour_similarity[items, -1:]
        return similarity * ((similarity > 0) & (similarity >= last_kept)).to(similarity.dtype)

    def new_item_content_similarity(self, items: torch.Tensor, n_history: torch.Tensor, content: torch.Tensor,
                                    new_item_content: torch.Tensor) -> torch.Tensor:
        """Content kNN scores (n, m) of brand-new items: summed over each person's history items."""
        n = n_history.shape[0]
        owner = torch.repeat_interleave(torch.arange(n, device=items.device), n_history.long(),
                                        output_size=items.shape[0])
        similarity = self.new_item_neighbour_similarity(content, new_item_content, items)   # (nnz, m)
        return torch.zeros(n, similarity.shape[1], device=items.device, dtype=similarity.dtype).index_add_(
            0, owner, similarity)

    # -- scores -----------------------------------------------------------------
    def source_scores(self, profile: torch.Tensor, items: torch.Tensor, offsets: torch.Tensor,
                      n_history: torch.Tensor, neighbour_scores: torch.Tensor | None,
                      content: torch.Tensor | None, id_mask: torch.Tensor,
                      index: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                      split_item_parts: bool = False, new_item_content: torch.Tensor | None = None,
                      statistics: dict | None = None, fixed: Mapping[str, torch.Tensor] | None = None,
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The gates and each source's standardised scores.

        Parameters
        ----------
        neighbour_scores : (n, n_items), optional
            Raw scores of the ``similar_people`` source (see :class:`~.data._NeighbourPool`), all items.
        content, id_mask
            Of the items scored (all, or ``index``).
        index : (c,) long, optional
            Score only these items (sampled softmax); all items by default.
        reference : (r,) long, optional
            Columns of the scored items whose mean and spread standardise the scores (a uniform
            sample of the catalogue when ``index`` is a sample); all columns by default.
        split_item_parts : bool
            Return the profile and history scores split into collaborative and content parts.
        new_item_content : (m, n_content), optional
            Brand-new items appended after the scored ones (needs ``index`` None): scored like a
            catalogue item without interactions (id vector off, content vector, popularity
            predicted from content, no item-item score, content kNN against the history),
            standardised with the catalogue's mean and spread only, so their scores are on the
            scale of the catalogue's.
        statistics : dict, optional
            Filled with what scoring a new item needs besides its content (see
            :meth:`FusedRecommender.score_new_items`): ``profile_vector``, ``history_vector``
            (n, dim) and, per source, ``mean_<source>`` and ``spread_<source>`` (n, 1).
        fixed : dict, optional
            The sources without trainable weights, already standardised by :meth:`fixed_scores`
            with the same arguments (training prepares them in the batch thread); computed here
            when not given.

        Returns
        -------
        gate : (n, 2, len(SOURCES))
            ``gate[:, 0]`` weighs the sources for items with an id vector, ``gate[:, 1]`` for
            items without one (new items), see :meth:`fuse`.
        scores : dict of (n, c [+ m])
            ``profile``, ``history``, ``item_item``, ``content_similarity``, ``popularity`` (or,
            with ``split_item_parts``, ``profile_collaborative``, ``profile_content``,
            ``history_collaborative``, ``history_content`` instead of ``profile`` and ``history``).
        """
        gate, profile_vector, history_vector = self.user_parts(profile, items, offsets, n_history, statistics)
        collaborative, content_vectors = self.item_parts(content, id_mask, index)
        if new_item_content is not None and new_item_content.shape[0]:
            if reference is None:
                reference = torch.arange(collaborative.shape[0], device=collaborative.device)
            new_content_vectors, _ = self.new_item_parts(new_item_content)
            collaborative = torch.cat([collaborative, torch.zeros_like(new_content_vectors)])
            content_vectors = torch.cat([content_vectors, new_content_vectors])
        scores: dict[str, torch.Tensor] = {}
        for name, vector in (("profile", profile_vector), ("history", history_vector)):
            if split_item_parts:
                parts = {"collaborative": vector @ collaborative.T, "content": vector @ content_vectors.T}
                mean, spread = _mean_and_spread(_columns(parts["collaborative"] + parts["content"], reference))
                for part, raw in parts.items():
                    scores[f"{name}_{part}"] = (raw - _columns(raw, reference).mean(dim=1, keepdim=True)) / spread
            else:
                scores[name] = _standardised(vector @ (collaborative + content_vectors).T, reference,
                                             statistics=statistics, name=name)
            if statistics is not None:
                statistics[f"{name}_vector"] = vector
        if fixed is None:
            fixed = self.fixed_scores(items, n_history, neighbour_scores, content, id_mask, index, reference,
                                      new_item_content, statistics)
        scores.update(fixed)
        return torch.stack([gate, self.cold_gate(gate)], dim=1), scores

    def fixed_scores(self, items: torch.Tensor, n_history: torch.Tensor, neighbour_scores: torch.Tensor | None,
                     content: torch.Tensor | None, id_mask: torch.Tensor, index: torch.Tensor | None = None,
                     reference: torch.Tensor | None = None, new_item_content: torch.Tensor | None = None,
                     statistics: dict | None = None) -> dict[str, torch.Tensor]:
        """Standardised scores (n, c [+ m]) of the sources without trainable weights: ``item_item``,
        ``content_similarity``, ``similar_people`` and ``popularity`` (a broadcast row); the
        arguments as in :meth:`source_scores`.

        They depend only on the history, the profile and the id mask, so training computes them in
        the batch thread, beside the network's step (:meth:`FusedRecommender._step_inputs`).
        """
        n, n_scored = n_history.shape[0], id_mask.shape[0]
        n_new = 0 if new_item_content is None else new_item_content.shape[0]
        if n_new and reference is None:
            reference = torch.arange(n_scored, device=id_mask.device)
        # Item-item and similar-people scores come from interactions: about an item without an
        # id vector (new, or id-dropped in training, which must look new) they know nothing, so
        # it gets their average score (0 after standardising), not that of an item nobody picked.
        known = id_mask if not n_new else torch.cat([id_mask, id_mask.new_zeros(n_new)])
        scores: dict[str, torch.Tensor] = {}
        if self.n_item_item:
            raw = self.item_item_scores(items, n_history, index)
            if n_new:
                raw = torch.cat([raw, raw.new_zeros(n, n_new)], dim=1)
            scores["item_item"] = _standardised(raw, reference, known)
        if self.n_content_neighbours:
            raw = self.content_similarity_scores(items, n_history, index)
            if n_new:
                raw = torch.cat([raw, self.new_item_content_similarity(items, n_history, content,
                                                                        new_item_content)], dim=1)
            scores["content_similarity"] = _standardised(raw, reference, statistics=statistics,
                                                         name="content_similarity")
        if self.similar_people and neighbour_scores is not None:
            # Already restricted to ``index`` by the caller when it has as many columns.
            raw = neighbour_scores if index is None or neighbour_scores.shape[1] == index.shape[0] \
                else neighbour_scores[:, index]
            if n_new:
                raw = torch.cat([raw, raw.new_zeros(n, n_new)], dim=1)
            scores["similar_people"] = _standardised(raw, reference, known)
        popularity = self.item_popularity(content, id_mask, index)
        if n_new:
            popularity = torch.cat([popularity, self.predicted_popularity(new_item_content, n_new)])
        mean, spread = _mean_and_spread(_columns(popularity[None, :], reference))
        if statistics is not None:
            statistics["mean_popularity"], statistics["spread_popularity"] = mean, spread
        scores["popularity"] = ((popularity[None, :] - mean) / spread).expand(n, -1)
        missing = [source for source in SOURCES[2:] if source not in scores]
        if missing:   # one shared zero tensor for the sources this model or these people lack
            scores.update(dict.fromkeys(missing, id_mask.new_zeros(n, n_scored + n_new)))
        return scores

    def fuse(self, gate: torch.Tensor, scores: Mapping[str, torch.Tensor], id_mask: torch.Tensor,
             n_new: int = 0) -> torch.Tensor:
        """``temperature * sum_s gate_s * z_s``, with the cold gate (and, after training, the new-item
        shift) for items whose id vector is off.

        ``id_mask`` (c,) is that of the scored items; ``n_new`` brand-new items follow them.
        """
        cold = 1.0 - id_mask
        if n_new:
            cold = torch.cat([cold, cold.new_ones(n_new)])
        # T sum_s (g_s (1 - cold) + g'_s cold) z_s: one mix over every item, plus a correction on
        # the cold items only (this runs at every training step; a per-source blend over every
        # item, or one batched product over stacked sources, measured slower on the CPU). The
        # temperature goes into the (n, S) gate, and each source is one fused multiply-add.
        weights = self.temperature * gate
        columns = torch.nonzero(cold > 0).squeeze(1)
        mixed = _Mix.apply(weights[:, 0], weights[:, 1] - weights[:, 0], columns, cold[columns],
                           *(scores[source] for source in SOURCES))
        if len(columns) and not self.training:   # the shift is 0 while training: no read of it (a GPU sync)
            # In place: no backward node keeps ``mixed`` itself.
            mixed.index_add_(1, columns, (self.new_item_shift * cold[columns]).expand(mixed.shape[0], -1))
        return mixed

    def logits(self, profile: torch.Tensor, items: torch.Tensor, offsets: torch.Tensor, n_history: torch.Tensor,
               neighbour_scores: torch.Tensor | None, content: torch.Tensor | None, id_mask: torch.Tensor,
               index: torch.Tensor | None = None, reference: torch.Tensor | None = None,
               new_item_content: torch.Tensor | None = None, fixed: Mapping[str, torch.Tensor] | None = None
               ) -> torch.Tensor:
        """Scores (n, n_items), or (n, len(index)) for the items ``index`` only (then the new items, if any)."""
        gate, scores = self.source_scores(profile, items, offsets, n_history, neighbour_scores, content, id_mask,
                                          index, reference, new_item_content=new_item_content, fixed=fixed)
        n_new = 0 if new_item_content is None else new_item_content.shape[0]
        return self.fuse(gate, scores, id_mask, n_new)
