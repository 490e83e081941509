"""The command line's shared options, declared once as data, and the `--format` option made from a view.

Every command that opens a source takes the same `--config/--variant/--motion-adapter/--allow-pickle`, every command that runs
a forward pass the same size options, every command that runs on a device the same `--device/--dtype`, and every
command that times the same `--warmup/--repeat/--max-seconds`. They are declared here once (`SOURCE`, `SIZES`,
`DEVICE`, `TIMING`; and `TRAINING`, `STYLE` for the library value a command builds from them) and added to a
command by `@with_options(SOURCE, SIZES)`, which hands them to it as one `Options` value: a new size option
(`--frames`) is one line here and every command has it. A device or timing option left out is not passed on at
all, so each library call keeps its own default (meta for shapes, the fastest device for timing). `--format` is
built from the formats the view itself declares (`View.formats`), so a command never lists formats by hand, and a
view that learns a format offers it at once.

Torch-free: `unetinspect --help` imports this.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from unetinspect.errors import OptionsError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SharedOption:
    """One option several commands take: its parameter name, its Typer annotation and its default."""

    name: str
    annotation: Any
    default: Any


@dataclass(frozen=True)
class OptionGroup:
    name: str
    options: tuple[SharedOption, ...]


# Typer shows each group in a panel of its own, under the command's own options.
SOURCE_PANEL, SIZES_PANEL, DEVICE_PANEL, TIMING_PANEL = "Source options", "Size options", "Device options", \
    "Timing options"
TRAINING_PANEL, STYLE_PANEL = "Training options", "Drawing options"


def choices(name: str, *values: str) -> type[Enum]:
    """An option's fixed set of values, as the str Enum that Typer turns into a checked choice."""
    return Enum(name, {value: value for value in values}, type=str)  # type: ignore[return-value]


def _source(*decls: str, **options: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=SOURCE_PANEL, **options)


def _size(*decls: str, **options: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=SIZES_PANEL, **options)


def _device(*decls: str, **options: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=DEVICE_PANEL, show_default=False, **options)


def _timing(*decls: str, **options: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=TIMING_PANEL, show_default=False, **options)


def _training(*decls: str, **options: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=TRAINING_PANEL, **options)


def _drawing(*decls: str, **options: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=STYLE_PANEL, **options)


SOURCE = OptionGroup("source", (
    SharedOption("config", Annotated[Optional[str], _source(
        "--config", "-c", help="Config to use instead of the source's own (a config.json or a preset name).")], None),
    SharedOption("variant", Annotated[Optional[str], _source(
        "--variant", help="Weights variant of a diffusers folder, e.g. fp16.")], None),
    SharedOption("motion_adapter", Annotated[Optional[str], _source(
        "--motion-adapter", help="Put AnimateDiff's motion modules (a MotionAdapter folder, or an adapter file such as "
        "mm_sd_v15_v2.safetensors) on this image UNet, as diffusers' UNetMotionModel.from_unet2d: the AnimateDiff "
        "UNet in every view.", show_default=False)], None),
    SharedOption("allow_pickle", Annotated[bool, _source(
        "--allow-pickle", help="Read .ckpt/.bin/.pt pickle files (weights_only=True). Only for files you trust.")],
        False),
))

# "\[" keeps rich from reading "[default: …]" as markup (and dropping it)
SIZES = OptionGroup("sizes", (
    SharedOption("batch", Annotated[int, _size("--batch", "-b", min=1, help="Batch size.")], 1),
    SharedOption("height", Annotated[Optional[int], _size(
        "--height", help="Image height in pixels (the latent is the family's factor smaller: 8 for SD/SDXL, 4 for "
        "the x4 upscaler, 1 in pixel space). \\[default: the config's sample_size]", show_default=False)], None),
    SharedOption("width", Annotated[Optional[int], _size(
        "--width", help="Image width in pixels. \\[default: the config's sample_size]", show_default=False)], None),
    SharedOption("latent", Annotated[Optional[str], _size(
        "--latent", help="The latent size instead of --height/--width, as HxW or one number (any model, also where "
        "the pixel size is unknown).", show_default=False)], None),
    SharedOption("text_len", Annotated[int, _size(
        "--text-len", min=1, help="Text tokens (encoder_hidden_states length).")], 77),
    SharedOption("frames", Annotated[Optional[int], _size(
        "--frames", help="Frames of a video UNet, a size like the others (default: the family's own: 14 svd, 25 "
        "svd-xt, 16 AnimateDiff; an image UNet has none).", show_default=False)], None),
))


# The three namings of the same blocks (weights/block_names.py); listed here too, so --help needs no import of it.
Naming = Enum("Naming", {name: name for name in ("diffusers", "ldm", "lbw")}, type=str)  # type: ignore[misc]
NAMES = OptionGroup("names", (
    SharedOption("names", Annotated[Naming, typer.Option(  # type: ignore[valid-type]
        "--names", help="Name modules as diffusers does (down_blocks.1.attentions.0), as the original LDM UNet "
        "does (input_blocks.4.1: A1111, ComfyUI, sgm, kohya) or by LoRA Block Weight ID (IN04). JSON keeps "
        "diffusers' path and adds both others.")], Naming.diffusers),  # type: ignore[attr-defined]
))


DEVICE = OptionGroup("device", (
    SharedOption("device", Annotated[Optional[str], _device(
        "--device", help="meta (shapes only, no weights, instant), cpu, cuda, cuda:N or auto. \\[default: meta where "
        "shapes suffice (summary, compare, memory), else cuda if available, else cpu]")], None),
    SharedOption("dtype", Annotated[Optional[str], _device(
        "--dtype", help="fp32, fp16 or bf16. \\[default: fp32; profile: fp16 on CUDA; memory: --mixed's]")], None),
))

TIMING = OptionGroup("timing", (
    SharedOption("warmup", Annotated[Optional[int], _timing(
        "--warmup", min=0, help="Untimed runs before timing. \\[default: 2]")], None),
    SharedOption("repeat", Annotated[Optional[int], _timing(
        "--repeat", "-r", min=1, help="Timed runs (each: one without hooks, one with). \\[default: 10; 5 for "
        "compare and report]")], None),
    SharedOption("max_seconds", Annotated[Optional[float], _timing(
        "--max-seconds", min=0, help="Refuse, before the timed runs, work estimated (from its FLOPs and one batch-1 "
        "run) to take longer than this; an estimate over 10 s is printed. \\[default: 600]")], None),
))


# What a training step trains and how: `Options.training()` is the library's `Training`.
TRAINING = OptionGroup("training", (
    SharedOption("checkpointing", Annotated[bool, _training(
        "--checkpointing", help="Gradient checkpointing as diffusers' enable_gradient_checkpointing(): resnets and "
        "transformer blocks recomputed in backward.")], False),
    SharedOption("optimizer", Annotated[str, _training(
        "--optimizer", help="adamw, adamw-8bit, sgd (no momentum) or adafactor.")], "adamw"),
    SharedOption("mixed", Annotated[Optional[str], _training(
        "--mixed", help="fp16 or bf16: half weights and activations, fp32 master weights.", show_default=False)],
        None),
    SharedOption("lora_rank", Annotated[Optional[int], _training(
        "--lora-rank", help="Train LoRA adapters of this rank only.", show_default=False)], None),
    SharedOption("lora_targets", Annotated[str, _training(
        "--lora-targets", help="The modules LoRA adapts, as PEFT's target_modules (Linear or Conv2d), or kohya / "
        "locon: kohya's sd-scripts selection, without or with the convolutions.")], "to_k,to_q,to_v,to_out.0"),
    SharedOption("lora_conv_rank", Annotated[Optional[int], _training(
        "--lora-conv-rank", help="With --lora-targets locon: the 3×3 convolutions' rank (kohya's conv_dim). "
        "\\[default: --lora-rank]", show_default=False)], None),
    SharedOption("frozen", Annotated[Optional[list[str]], _training(
        "--frozen", help="Freeze the parameters under this module path (repeat for several), e.g. down_blocks.0.",
        show_default=False)], None),
    SharedOption("attention_kernel", Annotated[Optional[str], _training(
        "--attention", help="The attention kernel measured: flash, efficient or math. \\[default: what torch runs "
        "for training on the device: flash on the CPU; on CUDA, and on meta (a CUDA GPU), flash in fp16/bf16, "
        "efficient in fp32]", show_default=False)], None),
    SharedOption("foreach", Annotated[Optional[bool], _training(
        "--foreach/--no-foreach", help="The optimizer step's implementation. \\[default: torch's on the device: "
        "foreach on CUDA and meta, a for-loop on the CPU]", show_default=False)], None),
    SharedOption("fused", Annotated[bool, _training(
        "--fused", help="The optimizer's fused kernel (adamw, sgd): in place, no temporaries.")], False),
))

Direction, Theme = choices("Direction", "TB", "LR"), choices("Theme", "light", "dark")

# How a diagram is drawn: `Options.style()` is render.graph's `Style`.
STYLE = OptionGroup("style", (
    SharedOption("direction", Annotated[Direction, _drawing(  # type: ignore[valid-type]
        "--direction", help="TB: the U upright; LR: on its side.")], Direction.TB),  # type: ignore[attr-defined]
    SharedOption("no_shapes", Annotated[bool, _drawing("--no-shapes", help="No tensor shapes on the edges.")],
                 False),
    SharedOption("no_params", Annotated[bool, _drawing("--no-params", help="No parameter counts.")], False),
    SharedOption("theme", Annotated[Theme, _drawing(  # type: ignore[valid-type]
        "--theme", help="light or dark background.")], Theme.light),  # type: ignore[attr-defined]
))


# ---- single options several commands take, as Typer annotations -------------------------------------------------

SourceArg = Annotated[
    Optional[str],
    typer.Argument(help="Preset name, config.json, diffusers folder, or .safetensors checkpoint. \\[default: sd15]",
                   show_default=False),
]
AllowPickleOpt = SOURCE.options[-1].annotation
DepthOpt = Annotated[int, typer.Option("--depth", "-d", min=0, help="Show every module down to this depth: "
                                       "1 = blocks (down_blocks.0, mid_block, ...), 2 = also their layers, and so on.")]
ControlNetOpt = Annotated[Optional[list[str]], typer.Option(
    "--controlnet", help="Add a ControlNet (folder, config.json or file; repeat for several): the step becomes the "
    "ControlNets, then the UNet with their residuals. Default --depth is then 2: both models' blocks.",
    show_default=False)]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of the terminal.")]
Impl = choices("Impl", "ours", "diffusers")
ImplOpt = Annotated[Impl, typer.Option("--impl", help="ours: our model of the source. diffusers: diffusers' own "
                                       "class with the same weights (needs diffusers installed).")]
BranchesOpt = Annotated[bool, typer.Option("--branches", help="Cost of each shallow branch a DeepCache-style "
                                           "method runs (everything deeper than a skip reused): FLOPs, MACs, share "
                                           "of the step, parameters; with profile, latency.")]
LatencyOpt = Annotated[bool, typer.Option("--profile", help="Also time every block (CUDA when available, else the "
                                          "CPU; random weights for configs).")]



@dataclass(frozen=True)
class Options:
    """What a command's shared options said, by parameter name."""

    values: dict[str, Any]

    @property
    def loading(self) -> dict[str, Any]:
        """The source options, as the library's keyword arguments (config, variant, allow_pickle)."""
        return {option.name: self.values[option.name] for option in SOURCE.options if option.name in self.values}

    @property
    def names(self) -> str:
        """`--names` as the views take it: "diffusers", "ldm" or "lbw"."""
        return self.values["names"].value

    @property
    def device(self) -> dict[str, Any]:
        """`--device/--dtype` as keyword arguments, only those given: the library's own defaults stand."""
        return self._given(DEVICE)

    @property
    def timing(self) -> dict[str, Any]:
        """`--warmup/--repeat/--max-seconds` as keyword arguments, only those given."""
        return self._given(TIMING)

    def training(self) -> Any:
        """The training options as the library's `Training`."""
        from unetinspect.views.memory import Training

        v = self.values
        return Training(optimizer=v["optimizer"], checkpointing=v["checkpointing"], mixed=v["mixed"],
                        lora_rank=v["lora_rank"], lora_targets=tuple(v["lora_targets"].split(",")),
                        lora_conv_rank=v["lora_conv_rank"], frozen=tuple(v["frozen"] or ()), foreach=v["foreach"],
                        fused=v["fused"])

    def style(self) -> Any:
        """The drawing options as the diagram's `Style`."""
        from unetinspect.render.graph import Style

        v = self.values
        return Style(direction=v["direction"].value, shapes=not v["no_shapes"], params=not v["no_params"],
                     theme=v["theme"].value)

    def _given(self, group: OptionGroup) -> dict[str, Any]:
        return {o.name: self.values[o.name] for o in group.options if self.values.get(o.name) is not None}

    def spec(self) -> Any:
        """The size options as the library's `InputSpec` (`--latent 64x96` or `--latent 64`); a latent that is no
        size raises `OptionsError` (call it through cli.run: one line, exit 2)."""
        from unetinspect.sources.inputs import InputSpec

        latent = self.values["latent"]
        size = None
        if latent is not None:
            parts = latent.lower().split("x")
            # isdigit() alone lets '²' through (a digit to Unicode, not to int()): ASCII digits only
            if len(parts) not in (1, 2) or not all(_whole(part) and int(part) > 0 for part in parts):
                raise OptionsError(f"--latent {latent!r} is not a latent size", "give HxW or one number, e.g. 64x96")
            size = (int(parts[0]), int(parts[-1]))
        return InputSpec(batch=self.values["batch"], height=self.values["height"], width=self.values["width"],
                         text_len=self.values["text_len"], latent=size, frames=self.values["frames"])


def _whole(text: str) -> bool:
    """A whole number in ASCII digits (what `int` reads: not '²', which `str.isdigit` calls a digit)."""
    text = text.strip()
    return text.isascii() and text.isdigit()


def with_options(*groups: OptionGroup) -> Callable[[F], F]:
    """Add the groups' options to a command (after its own, in the help too) and hand them to it as `opts`.

    Typer reads a command's parameters from its signature, so the wrapper shows Typer the command's own
    parameters (less `opts`) followed by the shared ones, and gathers the shared ones back into one `Options`.
    """
    shared = [option for group in groups for option in group.options]

    def decorate(command: F) -> F:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "opts"]
        added = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default,
                                   annotation=o.annotation) for o in shared]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {o.name: kwargs.pop(o.name) for o in shared}
            return command(**kwargs, opts=Options(values))

        wrapper.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        del wrapper.__wrapped__  # Typer must read the signature above, not the command's own
        return wrapper  # type: ignore[return-value]

    return decorate


def format_option(view: Any) -> Any:
    """`--format`, its choices the formats `view` declares (a view that learns a format offers it at once); left
    out, the view's first format, or the file format -o's suffix names."""
    values = view.formats()
    choices = Enum(f"{view.__name__}Format", {value: value for value in values}, type=str)
    files = f", or {'/'.join(view.file_formats)} by -o's suffix" if view.file_formats else ""
    return Annotated[Optional[choices], typer.Option(  # type: ignore[valid-type]
        "--format", "-f", help=f"Output format. \\[default: {values[0]}{files}]", show_default=False)]
