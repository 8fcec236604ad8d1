"""FusedRecommender: collaborative, profile and content signals fused per person by a learned gate.

The model (PyTorch, trained end to end) has six *sources*, each of which scores every item
for a person ``u``:

======================  ===================================================================
``profile``             ``p(u) . v_i``: an MLP over the static profile and the behaviour
                        features
``history``             ``h(u) . v_i``: an L2-normalised bag of learned embeddings of the
                        items in the person's history, then a projection (a Mult-DAE encoder)
``item_item``           ``(x_u B)_i``: EASE item-item weights ``B`` computed in closed form
                        (penalty 8x the mean count per item; the training part's interactions
                        while training, every interaction once fitted), covering the
                        ``item_item_max_items`` most popular items
``content_similarity``  content kNN: the item's cosine similarity (on the item features) to
                        the history items it is among the ``content_neighbours`` nearest of
``similar_people``      profile kNN: the similarity-weighted share of the ``similar_people``
                        training users most like the person (static profile, plus category
                        shares when there is a history) who picked the item
``popularity``          ``log(1 + count_i)`` (the training part's counts while training, every
                        interaction once fitted, like the popularity baseline); for a new item, a
                        ridge regression of it on content
======================  ===================================================================

with item vectors ``v_i = E_i + C(content_i)`` (a collaborative id vector plus a content
tower). Each source's scores are standardised over the catalogue for the person
(``z_s = (s - mean) / std``), so the sources speak on the same scale, and a gate ``g(u)`` --
a softmax computed by a small MLP from the two towers' hidden states and the history length
-- mixes them::

    score(u, i) = temperature * sum_s g_s(u) * z_s(u, i)

Items without interactions (new items) use a second gate ``g'(u) = softmax(log g(u) + b)``
with a learnt offset ``b`` (trained on the id-dropped items), and the two interaction-based
sources (``item_item``, ``similar_people``), which know nothing about such an item, give it
their average score (``z = 0``) rather than the score of an item nobody picked.

Nothing non-linear follows the gate, so every score splits *exactly* into per-source
contributions, and the profile and history contributions further into their collaborative
(``E_i``) and content (``C(content_i)``) parts (:meth:`FusedRecommender.explain`); the gate
itself says how much each signal is trusted for each person (:meth:`FusedRecommender.gate_weights`).
Sources a person cannot have (history, item-item and content similarity without a history)
get exactly zero weight.

After training the gate is corrected on the validation people: for people without history an
offset on the popularity logit (a grid that reaches popularity alone, chosen by NDCG@10 on
held-out new people), for people with a history one offset per source (coordinate search on
NDCG@10: of the few-shot validation people for histories of up to :data:`SHORT_HISTORY` items,
of the warm ones for longer histories), then a fixed lift for the item-item source (long
histories) or the similar-people source (short ones), which the likelihood-trained gate
under-weights (:data:`LONG_HISTORY_GATE_LIFT`, :data:`SHORT_HISTORY_GATE_LIFT`). New items are
ordered among themselves by a gate that leans further on content similarity
(:data:`NEW_ITEM_CONTENT_SIMILARITY_OFFSET`), and placed among the other items by a shift of their
scores chosen on every validation person (:data:`NEW_ITEM_SHIFT_GRID`). See
``_GateCalibration._calibrate_gate`` in :mod:`.calibration`.

Degrading gracefully:

* a person with no history is scored from the profile, similar people and popularity;
* a person with a handful of interactions: profile, those items, similar people and
  popularity (the gate learns how much to trust each at each history length);
* a warm user: everything;
* a new item (no interaction in training): its id vector is switched off, so it is scored
  from its content vector, its content similarity to the person's history and its
  content-predicted popularity; item-id dropout during training teaches the content tower
  (and the new-item gate) to stand alone. :meth:`FusedRecommender.score_new_items` scores
  items that are not in the data at all the same way.

Training is DropoutNet-style denoising with a multinomial likelihood (Mult-DAE): every epoch
each user is shown, at random, *no* history (cold-start practice), 1-5 items (few-shot
practice: half the time their first ones by time, as a new person has them) or 50-80 % of it
(warm; a quarter of the time the earliest part, the latest to predict), with behaviour features
recomputed from the shown items by the dataset's own
:class:`~recommender.features.BehaviourEncoder` (the very code that encodes new people at
inference), and the model predicts the hidden items with a softmax over the whole catalogue (a
sampled softmax with a log-Q correction above ``full_softmax_items``).
Auxiliary losses (``source_loss_weight``) make the profile and history sources rank well on
their own, which keeps each source a meaningful recommender -- and measurably improves the
fused model for new people. Early stopping on NDCG@10 of a validation split carved from the
training data: known users with 20 % of their items hidden, plus held-out users scored as new
people with none or their first three items revealed (like the ``warm``, ``cold_user`` and
``few_shot`` protocols of :mod:`recommender.evaluation`). What is validated, and kept when best,
is an exponential moving average of the weights over about an epoch (``weight_average``): a
single step's weights score validation noisily, and early stopping on noise picks bad epochs.

Explicit ratings: every rated item is part of a person's history (a 2-star review still says
what the person looked at), but as a *target* an item rated below the relevance threshold
(``0.7 * max rating`` on a star scale, the rule of :mod:`recommender.evaluation`) counts only
``low_rating_weight``. Implicit data (and counts) count every interaction fully.

Divergence: a NaN or infinite loss stops training with :class:`~recommender.errors.ModelFitError`
naming the learning rate; if an epoch had finished, the best weights so far stay on the model
(it remains usable), otherwise the model is left unfitted.

The package, one job per module:

* :mod:`.layers`: autograd functions with hand-written backward passes (standardising, mixing,
  the likelihood, the sparse content layer) and layer initialisers;
* :mod:`.network`: :class:`_FusedNetwork`, the towers, the six sources and the gate;
* :mod:`.data`: what training reads: practice batches, validation people, the EASE and
  content-neighbour matrices and the similar-people pool;
* :mod:`.calibration`: the gate's offsets and the new-item shift, chosen on the validation people
  after training, and the fixed lifts;
* :mod:`.model`: :class:`FusedRecommender`: training, early stopping, scoring, explanations and
  persistence.
"""
from .data import FIRST_ITEMS_SHARE, MIN_NEW_VALIDATION_PEOPLE, PAST_ITEMS_SHARE, VALIDATION_K
from .calibration import LONG_HISTORY_GATE_LIFT, NEW_PERSON_POPULARITY_GRID, SHORT_HISTORY_GATE_LIFT
from .model import SAMPLED_SOFTMAX_THREADS, FusedRecommender
from .network import NEW_ITEM_CONTENT_SIMILARITY_OFFSET, NEW_ITEM_SHIFT_GRID, SHORT_HISTORY, SOURCES

__all__ = ["FusedRecommender", "SOURCES", "SHORT_HISTORY", "NEW_ITEM_CONTENT_SIMILARITY_OFFSET", "NEW_ITEM_SHIFT_GRID",
           "NEW_PERSON_POPULARITY_GRID", "LONG_HISTORY_GATE_LIFT", "SHORT_HISTORY_GATE_LIFT",
           "SAMPLED_SOFTMAX_THREADS", "FIRST_ITEMS_SHARE", "PAST_ITEMS_SHARE", "MIN_NEW_VALIDATION_PEOPLE",
           "VALIDATION_K"]
