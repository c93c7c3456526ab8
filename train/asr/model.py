"""What only fine-tuning needs on top of shqip_av.components.whisper: SpecAugment and LoRA adapters."""

from __future__ import annotations

from shqip_av.components.whisper import ModelError


def apply_spec_augment(model, section) -> None:
    """Whisper's encoder masks time/frequency spans itself in training mode when configured."""
    config = model.config
    config.apply_spec_augment = bool(section.enabled)
    config.mask_time_prob = section.mask_time_prob
    config.mask_time_length = section.mask_time_length
    config.mask_feature_prob = section.mask_feature_prob
    config.mask_feature_length = section.mask_feature_length


def add_lora(model, section):
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in section.target_modules if m not in names]
    if missing:
        raise ModelError(
            f"LoRA target module(s) {missing} not found in the model "
            "(Whisper has q_proj, k_proj, v_proj, out_proj, fc1, fc2)"
        )
    config = LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=list(section.target_modules),
        bias="none",
    )
    return get_peft_model(model, config)


def trainable_summary(model) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"{trainable:,} of {total:,} parameters trainable ({100 * trainable / max(total, 1):.2f} %)"
