"""Attend-and-Excite (Chefer et al., 2023) on diffusers attention processors.

The diffusers Attend-and-Excite pipeline is deprecated and frozen, and it is a whole pipeline;
this is a step callback that any SD-1.x or SDXL pipeline (text-to-image, img2img, ControlNet)
accepts as ``callback_on_step_end``. How it works, as in the paper:

1. ``StoringAttnProcessor`` replaces the processors of the UNet's cross-attention layers. While
   the store is capturing, it computes the attention probabilities explicitly and keeps them for
   the layers at the chosen resolution (16x16 for SD-1.x at 512 px, 32x32 for SDXL at 1024 px:
   the resolution nearest a quarter of the latent's); otherwise it calls the original processor
   (SDPA), so generation is as fast as without it.
2. After each denoising step ``i`` the callback looks at the latents that step ``i+1`` will
   denoise. It runs the UNet once on them (conditional branch only), averages the stored maps
   over layers and heads, and for each subject token takes the maximum of its softmaxed,
   Gaussian-smoothed map. ``L_AE = max_s (1 - max attention of s)``.
3. The latents move against the gradient of ``L_AE`` (step ``scale_factor * sqrt(scale)``,
   the scale falling linearly from 1 to 0.5 over the run) during the first half of the steps;
   at three steps (0 %, 20 % and 40 % of the run, the paper's 0/10/20 of 50) they are refined
   until every subject reaches the target attention (0.05, 0.5, 0.8) or 20 refinements pass.

Difference from the paper: the callback runs after a step, so the very first denoising step is
not excited; the first refinement runs before the second step.

Subject tokens come from ``subject_token_indices``: no NLTK or spaCy model can be downloaded
here, so nouns are found with a heuristic that suits image prompts: the prompt is cut into
chunks at function words (articles, prepositions, conjunctions, pronouns, common verbs) and
punctuation; English noun phrases end in their head noun, so the last word of each chunk is
taken unless it is a known adjective (colours, sizes, materials used as modifiers, quality
words) or a style word ("photo", "style", "render" ...). "a red silk dress with long sleeves on
a beach" gives dress, sleeves, beach. The word lists are below; extend them rather than the rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------------------------
# Subject nouns
# --------------------------------------------------------------------------------------------

_FUNCTION_WORDS = frozenset(
    """a an the this that these those some any each every no another either neither both
    of in on at by for with without from into onto over under above below behind beside between
    near through across along around against among toward towards upon within off out up down via
    and or but nor so yet plus versus vs while whereas as than like unlike
    i me my we our you your he him his she her it its they them their who whom whose which what
    is are was were be been being am has have had having do does did will would can could should
    may might must shall wearing wears wear holding holds hold standing stands sitting sits
    walking walks lying posing poses looking looks made showing shows featuring features
    very really quite too more most less least much many few several one two three four five
    six seven eight nine ten not also just only even then there here where when how why
    please make give show create generate draw paint depict render""".split()
)

# Words that modify a noun; when one ends a chunk, the chunk has no head noun.
_ADJECTIVES = frozenset(
    """red orange yellow green blue purple violet pink brown black white gray grey golden gold silver
    beige ivory cream navy teal turquoise maroon burgundy olive khaki tan crimson scarlet emerald
    pastel neon dark light bright pale vivid muted colorful colourful monochrome transparent sheer
    big small large tiny huge little long short tall wide narrow thin thick slim loose tight fitted
    oversized cropped high low deep shallow heavy round square flat
    new old young modern vintage retro classic elegant casual formal simple plain fancy cute pretty
    beautiful handsome ugly stylish chic trendy luxurious luxury cozy cosy soft hard smooth rough shiny
    matte glossy floral striped checked plaid dotted polka patterned embroidered knitted knit woven
    silk cotton wool woolen woollen leather denim linen satin velvet lace chiffon cashmere suede
    wooden metal metallic glass plastic
    realistic photorealistic detailed highly ultra hd 4k 8k cinematic dramatic studio professional
    sunny rainy snowy cloudy foggy winter summer spring autumn fall morning evening night
    happy sad angry calm serene lonely quiet busy empty full open closed
    sleeveless strapless backless hooded zip zipped buttoned double single""".split()
)

# Nouns that name the picture rather than a subject in it.
_STYLE_WORDS = frozenset(
    """photo photograph picture image illustration painting drawing sketch render rendering art
    artwork style shot closeup close-up view portrait scene background foreground lighting light
    quality resolution detail details composition wallpaper poster design concept""".split()
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+|[^\sA-Za-z\d]")


def prompt_words(prompt: str) -> list[str]:
    """The prompt cut into words and punctuation marks, as CLIP's tokenizer pre-splits it."""
    return _WORD.findall(prompt)


def subject_nouns(prompt: str) -> list[tuple[int, str]]:
    """(word position, word) of each subject noun of ``prompt`` (see the module docstring)."""
    words = prompt_words(prompt)
    nouns: list[tuple[int, str]] = []
    chunk: list[int] = []

    def close() -> None:
        if chunk:
            head = chunk[-1]
            w = words[head].lower()
            if w not in _ADJECTIVES and w not in _STYLE_WORDS and not w.isdigit() and len(w) > 1:
                nouns.append((head, words[head]))
        chunk.clear()

    for i, word in enumerate(words):
        lw = word.lower()
        if not word[0].isalpha() or lw in _FUNCTION_WORDS or lw.endswith("ly"):
            close()
        else:
            chunk.append(i)
    close()
    seen: set[str] = set()
    out = []
    for pos, word in nouns:  # one index per distinct noun: exciting "dress" twice gains nothing
        if word.lower() not in seen:
            seen.add(word.lower())
            out.append((pos, word))
    return out


def subject_token_indices(tokenizer: Any, prompt: str, *, max_tokens: int | None = None) -> list[int]:
    """Token positions (in the padded ids, start token at 0) of the prompt's subject nouns.

    A noun split into several BPE pieces is represented by its last piece (the one carrying the
    word ending). Tokens past the tokenizer's length limit are dropped.
    """
    words = prompt_words(prompt)
    limit = max_tokens or int(getattr(tokenizer, "model_max_length", 77) or 77)
    wanted = {pos for pos, _ in subject_nouns(prompt)}
    out: list[int] = []
    cursor = 1  # after the start-of-text token
    for i, word in enumerate(words):
        n = len(tokenizer(word, add_special_tokens=False)["input_ids"])
        if i in wanted and n and cursor + n - 1 < limit - 1:
            out.append(cursor + n - 1)
        cursor += n
    return out


def prompt_token_count(tokenizer: Any, prompt: str) -> int:
    """Number of tokens of the prompt, without start/end tokens."""
    return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------


def _gaussian_kernel(size: int, sigma: float, device: Any, dtype: Any) -> torch.Tensor:
    import torch

    ax = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    k1 = torch.exp(-(ax**2) / (2 * sigma**2))
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).view(1, 1, size, size)


def max_attention_per_token(
    attn_maps: torch.Tensor,
    token_indices: Iterable[int],
    *,
    last_idx: int | None = None,
    smooth: bool = True,
    kernel_size: int = 3,
    sigma: float = 0.5,
) -> torch.Tensor:
    """For maps (h, w, K): the maximum of each token's map, after the paper's normalisation.

    The text part (between the start token and ``last_idx``, the end token; default: all 75)
    is scaled by 100 and softmaxed over tokens; each map is smoothed by a 3x3 Gaussian.
    """
    import torch
    import torch.nn.functional as F

    end = last_idx if last_idx is not None else attn_maps.shape[-1] - 1
    text = attn_maps[:, :, 1:end].float() * 100
    text = torch.softmax(text, dim=-1)
    kernel = _gaussian_kernel(kernel_size, sigma, text.device, text.dtype)
    out = []
    for index in token_indices:
        image = text[:, :, index - 1]
        if smooth:
            pad = kernel_size // 2
            padded = F.pad(image[None, None], (pad, pad, pad, pad), mode="reflect")
            image = F.conv2d(padded, kernel)[0, 0]
        out.append(image.max())
    return torch.stack(out) if out else text.new_zeros(0)


def attend_excite_loss(
    attn_maps: torch.Tensor, token_indices: Iterable[int], *, last_idx: int | None = None
) -> torch.Tensor:
    """L_AE = max over subject tokens of (1 - max attention); maps (h, w, K) or (B, h, w, K).

    A batch gives the mean of the per-image losses. Differentiable: usable as the
    Attend-and-Excite term of L = L_DPO + lambda * L_AE.
    """
    import torch

    indices = list(token_indices)
    if attn_maps.ndim == 4:
        return torch.stack([attend_excite_loss(m, indices, last_idx=last_idx) for m in attn_maps]).mean()
    if not indices:
        return attn_maps.new_zeros(()).float()
    maxima = max_attention_per_token(attn_maps, indices, last_idx=last_idx)
    return (1.0 - maxima).clamp(min=0).max()


# --------------------------------------------------------------------------------------------
# Storing cross-attention
# --------------------------------------------------------------------------------------------


class AttentionStore:
    """Holds the cross-attention probabilities of one UNet forward at one resolution."""

    def __init__(self, resolution: tuple[int, int] | None = None) -> None:
        self.resolution = resolution  # (h, w) of the maps kept; None: decided at install
        self.capturing = False
        self.rows: slice | None = None  # which batch rows to keep (e.g. the conditional half)
        self.maps: list[torch.Tensor] = []  # each (B, h*w, K), averaged over heads
        self._originals: dict[str, Any] | None = None
        self._model: Any = None

    # -- capture
    def begin(self, rows: slice | None = None) -> None:
        self.maps = []
        self.rows = rows
        self.capturing = True

    def end(self) -> None:
        self.capturing = False

    def add(self, probs: torch.Tensor, heads: int) -> None:
        b = probs.shape[0] // heads
        probs = probs.reshape(b, heads, probs.shape[1], probs.shape[2]).mean(dim=1)
        if self.rows is not None:
            probs = probs[self.rows]
        self.maps.append(probs)

    def aggregate(self) -> torch.Tensor:
        """(B, h, w, K): the kept maps averaged over layers (float32)."""
        import torch

        if not self.maps:
            raise RuntimeError(
                "no cross-attention was stored at the chosen resolution: the UNet has no "
                f"cross-attention layer at {self.resolution}"
            )
        h, w = self.resolution  # type: ignore[misc]
        stacked = torch.stack([m.float() for m in self.maps]).mean(dim=0)
        return stacked.reshape(stacked.shape[0], h, w, stacked.shape[-1])

    def wants(self, query_len: int) -> bool:
        return (
            self.capturing
            and self.resolution is not None
            and query_len == self.resolution[0] * self.resolution[1]
        )

    # -- processors
    @property
    def installed(self) -> bool:
        return self._originals is not None

    def install(self, model: Any) -> None:
        """Wrap the cross-attention processors of ``model`` (a UNet); others stay as they are."""
        if self._originals is not None:
            return
        originals = dict(model.attn_processors)
        new = {
            name: (StoringAttnProcessor(self, proc) if name.endswith("attn2.processor") else proc)
            for name, proc in originals.items()
        }
        model.set_attn_processor(new)
        self._originals = originals
        self._model = model

    def remove(self, model: Any | None = None) -> None:
        """Put the original processors back."""
        if self._originals is None:
            return
        (model or self._model).set_attn_processor(self._originals)
        self._originals = None
        self._model = None
        self.capturing = False
        self.maps = []


class StoringAttnProcessor:
    """Explicit cross-attention (probabilities kept) while the store captures; else the original."""

    def __init__(self, store: AttentionStore, original: Any) -> None:
        self.store = store
        self.original = original

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        query_len = (
            hidden_states.shape[1]
            if hidden_states.ndim == 3
            else hidden_states.shape[2] * hidden_states.shape[3]
        )
        if encoder_hidden_states is None or not self.store.wants(query_len):
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )
        import torch

        # The classic AttnProcessor path, keeping the probabilities.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch_size, key_len, _ = encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, key_len, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)
        self.store.add(probs, attn.heads)
        hidden_states = torch.bmm(probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def cross_attention_resolutions(unet: Any, latent_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Resolutions (h, w) at which the UNet has cross-attention, for latents of ``latent_hw``."""
    h, w = latent_hw
    out = []
    for i, block in enumerate(unet.down_blocks):
        if getattr(block, "has_cross_attention", False):
            f = 2**i
            out.append((math.ceil(h / f), math.ceil(w / f)))
    if getattr(unet.mid_block, "has_cross_attention", False):
        f = 2 ** (len(unet.down_blocks) - 1)
        out.append((math.ceil(h / f), math.ceil(w / f)))
    return sorted(set(out), reverse=True)


def choose_attention_resolution(unet: Any, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The cross-attention resolution nearest a quarter of the latent's (the paper's 16x16 of 64).

    Ties go to the finer one: more pixels, a sharper map.
    """
    options = cross_attention_resolutions(unet, latent_hw)
    if not options:
        raise ValueError("this UNet has no cross-attention layer")
    target = max(1.0, latent_hw[0] / 4)
    return min(options, key=lambda r: (abs(math.log(r[0] / target)), -r[0]))


# --------------------------------------------------------------------------------------------
# The step callback
# --------------------------------------------------------------------------------------------


class AttendExcite:
    """Attend-and-Excite as a ``callback_on_step_end`` for one prompt.

    Use ``AttendExcite.for_prompt(pipe, prompt, settings)`` (which installs the processors on
    ``pipe``) and pass ``.callback`` to the pipeline (with ``callback_on_step_end_tensor_inputs``
    including ``"latents"``). After the last step the original processors are back;
    ``install``/``remove`` (or ``with``) do it by hand. ``excite=False`` only measures.

    ``history`` (when ``record=True``) holds, per step, the maximum attention of each subject
    token in the latents the next step denoises, before and after the update.
    """

    def __init__(
        self,
        token_indices: list[int],
        *,
        last_idx: int | None = None,
        max_iter_fraction: float = 0.5,
        refine_at: dict[float, float] | None = None,
        scale_factor: float = 20.0,
        scale_range: tuple[float, float] = (1.0, 0.5),
        max_refinement_steps: int = 20,
        excite: bool = True,
        record: bool = False,
    ) -> None:
        if not token_indices:
            raise ValueError("Attend-and-Excite needs at least one subject token")
        self.token_indices = list(token_indices)
        self.last_idx = last_idx
        self.max_iter_fraction = max_iter_fraction
        # fraction of the run -> attention every subject should reach (paper: {0: .05, 10: .5, 20: .8} of 50)
        self.refine_at = refine_at if refine_at is not None else {0.0: 0.05, 0.2: 0.5, 0.4: 0.8}
        self.scale_factor = scale_factor
        self.scale_range = scale_range
        self.max_refinement_steps = max_refinement_steps
        self.excite = excite
        self.record = record
        self.history: list[dict[str, Any]] = []
        self.store = AttentionStore()
        self._pipe: Any = None
        self._inputs: dict[str, Any] = {}
        self._hook: Any = None

    # -- construction
    @classmethod
    def for_prompt(cls, pipe: Any, prompt: str, settings: Any = None, **kwargs: Any) -> AttendExcite | None:
        """An AttendExcite for the subject nouns of ``prompt``, or None when it has none (or the
        settings turn it off)."""
        if settings is not None and not getattr(settings, "use_attend_excite", True):
            return None
        tokenizer = getattr(pipe, "tokenizer", None)
        if tokenizer is None or not isinstance(prompt, str) or not prompt.strip():
            return None
        indices = subject_token_indices(tokenizer, prompt)
        if not indices:
            return None
        last_idx = min(prompt_token_count(tokenizer, prompt) + 1, int(tokenizer.model_max_length) - 1)
        hook = cls(indices, last_idx=last_idx, **kwargs)
        hook.install(pipe)  # now, so that the pipeline's first UNet call is seen
        return hook

    @property
    def tensor_inputs(self) -> list[str]:
        """What the pipeline must pass to the callback."""
        return ["latents"]

    # -- processors
    def install(self, pipe: Any) -> None:
        if self._pipe is pipe and self.store.installed:
            return
        if self._pipe is not None:
            self.remove(self._pipe)
        self.store.install(pipe.unet)
        # The UNet's inputs of the pipeline's own call (text embeddings, SDXL's added
        # conditioning) are read here, so any pipeline works without extra callback inputs.
        self._hook = pipe.unet.register_forward_pre_hook(self._remember_inputs, with_kwargs=True)
        self._pipe = pipe

    def remove(self, pipe: Any | None = None) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.store.remove((pipe or self._pipe).unet if (pipe or self._pipe) is not None else None)
        self._pipe = None
        self._inputs = {}

    def __enter__(self) -> AttendExcite:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pipe is not None:
            self.remove(self._pipe)

    def _remember_inputs(self, module: Any, args: tuple, kwargs: dict) -> None:
        if self.store.capturing:  # our own forward
            return
        ehs = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        self._inputs = {
            "encoder_hidden_states": ehs,
            "added_cond_kwargs": kwargs.get("added_cond_kwargs"),
            "timestep_cond": kwargs.get("timestep_cond"),
            "cross_attention_kwargs": kwargs.get("cross_attention_kwargs"),
        }

    @staticmethod
    def _cond_rows(n_embeds: int, n_latents: int) -> slice:
        return slice(n_embeds // 2, None) if n_embeds == 2 * n_latents else slice(0, None)

    # -- the A&E forward
    def _cond_inputs(self, pipe: Any, n: int) -> dict[str, Any]:
        ehs = self._inputs.get("encoder_hidden_states")
        if ehs is None:
            raise RuntimeError("the pipeline's UNet inputs were not seen; install before generating")
        rows = self._cond_rows(ehs.shape[0], n)
        out: dict[str, Any] = {"encoder_hidden_states": ehs[rows]}
        added = self._inputs.get("added_cond_kwargs")
        if added:
            out["added_cond_kwargs"] = {k: v[rows] for k, v in added.items()}
        tc = self._inputs.get("timestep_cond")
        if tc is not None:
            out["timestep_cond"] = tc[rows] if tc.shape[0] == ehs.shape[0] else tc
        return out

    def _loss(
        self, pipe: Any, latents: torch.Tensor, t: Any, cond: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss summed over the batch, per-image max attention (B, S)) for these latents."""
        import torch

        self.store.begin()
        try:
            pipe.unet(pipe.scheduler.scale_model_input(latents, t), t, return_dict=False, **cond)
        finally:
            self.store.end()
        maps = self.store.aggregate()  # (B, h, w, K)
        maxima = torch.stack(
            [max_attention_per_token(m, self.token_indices, last_idx=self.last_idx) for m in maps]
        )
        loss = (1.0 - maxima).clamp(min=0).max(dim=1).values.sum()
        return loss, maxima

    def _step(self, latents: torch.Tensor, loss: torch.Tensor, step_size: float) -> torch.Tensor:
        import torch

        if loss.requires_grad and float(loss.detach()) > 0:
            (grad,) = torch.autograd.grad(loss, [latents])
            latents = (latents - step_size * grad).detach().requires_grad_(True)
        return latents

    def _next_timestep(self, pipe: Any, timestep: Any) -> Any | None:
        timesteps = list(pipe.scheduler.timesteps)
        t_now = float(timestep)
        for i, t in enumerate(timesteps):
            if float(t) == t_now:
                return timesteps[i + 1] if i + 1 < len(timesteps) else None
        return None

    def callback(
        self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """``callback_on_step_end``: excite the latents the next step will denoise."""
        import torch

        if not self.store.installed or self._pipe is not pipe:
            self.install(pipe)  # late: the embeddings come from the callback inputs this time
        total = int(getattr(pipe, "_num_timesteps", 0) or len(pipe.scheduler.timesteps))
        latents = callback_kwargs.get("latents")
        next_t = self._next_timestep(pipe, timestep)
        if latents is None or next_t is None or step + 1 >= total:
            self.remove(pipe)  # the run is over: the pipeline is as it was
            return callback_kwargs
        if not self._inputs:
            self._inputs = self._fallback_inputs(pipe, callback_kwargs)
        if self.store.resolution is None:
            self.store.resolution = choose_attention_resolution(pipe.unet, tuple(latents.shape[-2:]))
        i = step + 1  # index of the step these latents are for
        limit = int(round(self.max_iter_fraction * total))
        cond = self._cond_inputs(pipe, latents.shape[0])
        lo, hi = self.scale_range
        scale = hi if total <= 1 else lo + (hi - lo) * (i / (total - 1))
        step_size = self.scale_factor * math.sqrt(scale)
        thresholds = {max(1, int(round(f * total))): v for f, v in self.refine_at.items()}
        entry: dict[str, Any] = {"step": i}
        with torch.enable_grad():
            lat = latents.detach().clone().requires_grad_(True)
            loss, maxima = self._loss(pipe, lat, next_t, cond)
            entry["before"] = maxima.detach().cpu()
            if self.excite and i <= limit:
                if i in thresholds:  # iterative refinement (the paper's Algorithm 1, lines 7-12)
                    target = 1.0 - thresholds[i]
                    for _ in range(self.max_refinement_steps):
                        if float(loss.detach()) / lat.shape[0] <= target:
                            break
                        lat = self._step(lat, loss, step_size)
                        loss, maxima = self._loss(pipe, lat, next_t, cond)
                lat = self._step(lat, loss, step_size)
                if self.record:
                    _, maxima = self._loss(pipe, lat, next_t, cond)
            entry["after"] = maxima.detach().cpu()
        if self.record:
            self.history.append(entry)
        callback_kwargs["latents"] = lat.detach().to(latents.dtype)
        return callback_kwargs

    def _fallback_inputs(self, pipe: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Installed after the pipeline's first forward: take the embeddings from the callback."""
        pe = callback_kwargs.get("prompt_embeds")
        if pe is None:
            raise RuntimeError(
                "Attend-and-Excite needs 'prompt_embeds' in the callback inputs, or install() before generating"
            )
        added = None
        if "add_text_embeds" in callback_kwargs and "add_time_ids" in callback_kwargs:
            added = {
                "text_embeds": callback_kwargs["add_text_embeds"],
                "time_ids": callback_kwargs["add_time_ids"],
            }
        return {"encoder_hidden_states": pe, "added_cond_kwargs": added}

    # -- measuring
    def subject_attention(self) -> list[float]:
        """Per subject token: its max attention averaged over the recorded steps (after the update)."""
        if not self.history:
            return []
        import torch

        stacked = torch.stack([h["after"].mean(dim=0) for h in self.history])
        return stacked.mean(dim=0).tolist()
