"""Direct logit attribution: why this token and not that one.

logit(target) − logit(baseline) at the last position is split into the parts that wrote the
final residual stream: the token and position embeddings, each head's output through its slice
of W_O, each attention layer's bias b_O, and each MLP's output. Their sum is the final stream x.

The final LayerNorm is y = γ ⊙ (x − mean(x)) / σ + β, with σ = √(var(x) + ε) of that position. Each
part c is taken through it as the field does: (c − mean(c)) / σ ⊙ γ, projected on
d = W_U[target] − W_U[baseline]; β · d is a part of its own. Centring is linear and σ is the one
of the whole stream, so the parts add up to the real logit difference, to float error.
"""

from __future__ import annotations

import torch

from . import engine

NOTE = ("Each part is (component − its mean over d_model) ÷ the final LayerNorm's scale σ at the last position "
        "⊙ its weight γ, projected on W_U[target] − W_U[baseline]; ln_final_bias is β · (W_U[target] − W_U[baseline]). "
        "The centring and σ are those of the whole residual stream, so the parts add up to logit_diff exactly, "
        "to float error.")


@torch.inference_mode()
def attribution(model, run, target: int, baseline: int) -> dict:
    ln_f = model.transformer.ln_f
    d = (model.lm_head.weight[target] - model.lm_head.weight[baseline]).double()  # [d_model]
    gamma, beta = ln_f.weight.double(), ln_f.bias.double()
    last = run[engine.layer_hook(run.n_layers - 1, "hook_resid_post")][-1].double()  # [d_model]
    sigma = torch.sqrt(last.var(unbiased=False) + ln_f.eps)

    def part(component: torch.Tensor) -> float:
        c = component.double()
        return float(((c - c.mean(dim=-1, keepdim=True)) / sigma * gamma) @ d)

    heads, attn_bias, mlp = [], [], []
    for layer, block in enumerate(model.transformer.h):
        hooks = run.layer(layer)  # every hook of the block, recomputed once (with the run's interventions)
        z = hooks["attn.hook_z"][-1]  # [head, d_head]
        n_heads, d_head = z.shape
        w_o = block.attn.c_proj.weight.view(n_heads, d_head, -1)  # [head, d_head, d_model]
        per_head = torch.einsum("hd,hdm->hm", z.double(), w_o.double())  # [head, d_model]
        c = per_head - per_head.mean(dim=-1, keepdim=True)
        heads.append([float(v) for v in (c / sigma * gamma) @ d])
        attn_bias.append(part(block.attn.c_proj.bias))
        mlp.append(part(hooks["hook_mlp_out"][-1]))
    logits = run["logits"]
    out = {
        "target": target,
        "baseline": baseline,
        "logit_diff": float(logits[target] - logits[baseline]),
        "embed": part(run["hook_embed"][-1]),
        "pos_embed": part(run["hook_pos_embed"][-1]),
        "heads": heads,
        "attn_bias": attn_bias,
        "mlp": mlp,
        "ln_final_bias": float(beta @ d),
    }
    out["total"] = out["embed"] + out["pos_embed"] + sum(map(sum, heads)) + sum(attn_bias) + sum(mlp) + out["ln_final_bias"]
    out["note"] = NOTE
    return out
