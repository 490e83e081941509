"""The `unetinspect` command: options in, one library call, `emit(view, fmt, result)` out. No logic of its own.

Every command shares the same option names (see `docs/cli.md`); errors from deep down arrive as
`UnetInspectError` and leave here as one line on stderr with exit code 1 (2 for usage errors, as Typer does).
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from unetinspect import __version__
from unetinspect.errors import UnetInspectError

# torch warns at import when numpy is not installed (a fresh venv: torch does not depend on it); nothing here uses
# numpy, so a newcomer's first command must not open with that warning. Set before any command imports torch.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)

app = typer.Typer(
    name="unetinspect",
    help="See inside the Stable Diffusion UNet: shapes, parameters, FLOPs, latency and diagrams, block by block.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


class State:
    """Global switches set by the top-level options."""

    debug = False
    no_color = False


def console(stderr: bool = False) -> Console:
    """A console honouring --no-color and NO_COLOR (rich reads NO_COLOR itself); piped, as wide as a file's tables
    rather than the 80 columns rich assumes off a terminal."""
    from unetinspect.render.formats import FILE_WIDTH

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else FILE_WIDTH
    return Console(stderr=stderr, no_color=State.no_color or None, highlight=False, width=width)


def _version(value: bool) -> None:
    if value:
        print(f"unetinspect {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours (also set by NO_COLOR).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
) -> None:
    """See inside the Stable Diffusion UNet."""
    State.no_color = no_color
    State.debug = debug


def choices(name: str, *values: str) -> type[Enum]:
    """An option's fixed set of values, as the str Enum that Typer turns into a checked choice."""
    return Enum(name, {value: value for value in values}, type=str)


# ---- options shared by the commands -------------------------------------------------------------------------------

SourceArg = Annotated[
    Optional[str],
    typer.Argument(help="Preset name, config.json, diffusers folder, or .safetensors checkpoint. [default: sd15]",
                   show_default=False),
]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="Config to use instead of the source's own "
                                                  "(a config.json or a preset name).")]
VariantOpt = Annotated[Optional[str], typer.Option("--variant", help="Weights variant of a diffusers folder, e.g. fp16.")]
AllowPickleOpt = Annotated[bool, typer.Option("--allow-pickle", help="Read .ckpt/.bin/.pt pickle files "
                                              "(weights_only=True). Only for files you trust.")]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, help="Batch size.")]
HeightOpt = Annotated[Optional[int], typer.Option("--height", help="Image height in pixels (the latent is the "
                                                  "family's factor smaller: 8 for SD/SDXL, 4 for the x4 upscaler, "
                                                  "1 in pixel space). [default: the config's sample_size]",
                                                  show_default=False)]
WidthOpt = Annotated[Optional[int], typer.Option("--width", help="Image width in pixels. [default: the config's "
                                                 "sample_size]", show_default=False)]
LatentOpt = Annotated[Optional[str], typer.Option("--latent", help="The latent size instead of --height/--width, "
                                                  "as HxW or one number (any model, also where the pixel size is "
                                                  "unknown).", show_default=False)]
TextLenOpt = Annotated[int, typer.Option("--text-len", min=1, help="Text tokens (encoder_hidden_states length).")]
DepthOpt = Annotated[int, typer.Option("--depth", "-d", min=0, help="Show every module down to this depth: "
                                       "1 = blocks (down_blocks.0, mid_block, ...), 2 = also their layers, and so on.")]
ControlNetOpt = Annotated[Optional[list[str]], typer.Option(
    "--controlnet", help="Add a ControlNet (folder, config.json or file; repeat for several): the step becomes the "
    "ControlNets, then the UNet with their residuals. Default --depth is then 2: both models' blocks.",
    show_default=False)]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of the terminal.")]


def say(message: str, label: str | None = None, style: str = "bold red") -> None:
    """One line on stderr, `label:` styled and the message as inert text: messages quote paths, tensor names and
    config values from strangers, which must neither be read as rich markup nor reach the terminal as escapes."""
    inert = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(message.split()))
    line = Text.assemble((f"{label}:", style), " ", inert) if label else Text(inert)
    console(stderr=True).print(line, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """Warnings in the tool's own voice: one `warning:` line, not Python's two with a source line."""
    say(str(message), "warning", "yellow")


def input_spec(batch: int, height: int | None, width: int | None, text_len: int, latent: str | None):
    """The size options as the library's InputSpec (`--latent 64x96` or `--latent 64`)."""
    from unetinspect.sources.inputs import InputSpec


    size = None
    if latent is not None:
        parts = latent.lower().split("x")
        if len(parts) not in (1, 2) or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
            raise typer.BadParameter(f"{latent!r} is not a latent size: give HxW or one number, e.g. 64x96",
                                     param_hint="--latent")
        size = (int(parts[0]), int(parts[-1]))
    return InputSpec(batch=batch, height=height, width=width, text_len=text_len, latent=size)


def refuse_output_early(output: Path | None, *inputs: str | None) -> None:
    """A bad -o fails now, before the work: not after seconds of tracing or minutes of timing."""
    if output is not None:
        from unetinspect.render.export import check_output_path

        run(check_output_path, output, [i for i in inputs if i])


def run(fn, *args, **kwargs):
    """Call into the library, turning a `UnetInspectError` (or any crash) into one line and exit code 1."""
    # The commands import torch before they get here. Its ~100k objects never become garbage, yet every full
    # collection walks them: a summary's thousands of hooks and records trigger several, ~0.3 s of a cold start.
    gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.showwarning = _show_warning
            return fn(*args, **kwargs)
    except UnetInspectError as exc:
        if State.debug:
            raise
        say(exc.one_line(), "error")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        say("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug of ours: still one line, with the way to see more
        if State.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        say(f"internal error: {type(exc).__name__}: {first} — rerun with --debug for the traceback and report it",
            "error")
        raise typer.Exit(1) from None


def emit(view: Any, fmt: Enum, result: Any, output: Path | None = None, inputs: list[str | None] = ()) -> None:
    """Show a result through its view in the format asked for: on stdout, or written whole to `output` (never over
    one of the command's `inputs`). Every command answers through here."""
    from unetinspect.render import formats

    path = run(formats.emit, view, fmt.value, result, output=output, inputs=inputs, console=console())
    if path is not None:
        say(f"wrote {path}")


# ---- commands -----------------------------------------------------------------------------------------------------


PresetsFormat = choices("PresetsFormat", "table", "json", "csv", "markdown")


@app.command()
def presets(
    fmt: Annotated[PresetsFormat, typer.Option("--format", "-f", help="Output format.")] = PresetsFormat.table,
    output: OutputOpt = None,
) -> None:
    """List the built-in configs with their parameter counts.

    Example: [bold]unetinspect presets[/]
    """
    from unetinspect.render.presets_view import PresetRow, PresetsView

    def build():
        from unetinspect.presets import PRESETS
        from unetinspect.sources.loading import count_parameters, load_unet

        return [PresetRow(p.name, count_parameters(load_unet(p.name, device="meta")), p.description)
                for p in PRESETS.values()]

    emit(PresetsView(), fmt, run(build), output)


DeviceOpt = Annotated[str, typer.Option("--device", help="meta (shapes only, instant), cpu, cuda, cuda:N or auto.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="fp32, fp16 or bf16.")]
Impl = choices("Impl", "ours", "diffusers")
ImplOpt = Annotated[Impl, typer.Option("--impl", help="ours: our model of the source. diffusers: diffusers' own "
                                       "class with the same weights (needs diffusers installed).")]


SummaryFormat = choices("SummaryFormat", "table", "tree", "json", "csv", "markdown")
BranchesOpt = Annotated[bool, typer.Option("--branches", help="Cost of each shallow branch a DeepCache-style "
                                           "method runs (everything deeper than a skip reused): FLOPs, MACs, share "
                                           "of the step, parameters; with profile, latency.")]


def _emit_branches(source: str | None, spec: Any, fmt: Enum, output: Path | None,
                   latencies: dict[str, float] | None = None, step_ms: float | None = None, **options: Any) -> None:
    """`--branches` of summary and profile: one table of the shallow branches, in the asked format."""
    from unetinspect.views.branches import branch_costs
    from unetinspect.render.branches_view import BranchesView

    result = run(branch_costs, source, spec, latencies=latencies, step_ms=step_ms, **options)
    table = fmt.value == "tree"  # a list of branches has no tree: the table stands in for it
    emit(BranchesView(), type(fmt)("table") if table else fmt, result, output, inputs=[source, options.get("config")])


@app.command()
def summary(
    source: SourceArg = None,
    depth: DepthOpt = 1,
    batch: BatchOpt = 1,
    height: HeightOpt = None,
    width: WidthOpt = None,
    latent: LatentOpt = None,
    text_len: TextLenOpt = 77,
    device: DeviceOpt = "meta",
    dtype: DtypeOpt = "fp32",
    fmt: Annotated[SummaryFormat, typer.Option("--format", "-f", help="Output format.")] = SummaryFormat.table,
    output: OutputOpt = None,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    allow_pickle: AllowPickleOpt = False,
    ip_adapter: Annotated[Optional[str], typer.Option(
        "--ip-adapter", help="Add an IP-Adapter .safetensors: its parameters per block and the FLOPs of the image "
        "tokens in every cross-attention (table or json).", show_default=False)] = None,
    controlnet: ControlNetOpt = None,
    branches: BranchesOpt = False,
    impl: ImplOpt = Impl.ours,
) -> None:
    """Every block's input and output shapes, parameters and FLOPs (attention included), and the skip connections.

    Runs on the meta device by default: no weights are read or allocated, so even SDXL takes about a second.
    A checkpoint's safetensors header is checked against the model without reading its tensors.

    Examples:

      [bold]unetinspect summary[/]                      SD 1.5 at 512×512, one row per block

      [bold]unetinspect summary sdxl --depth 2[/]       SDXL, down to resnets and transformers

      [bold]unetinspect summary ./my-model/unet --height 768 --width 768 -f json -o summary.json[/]
    """
    refuse_output_early(output, source, config, ip_adapter)
    from unetinspect.views.summary import summarize
    from unetinspect.render.summary_view import SummaryView

    spec = input_spec(batch, height, width, text_len, latent)
    if branches and (controlnet or ip_adapter):
        raise typer.BadParameter("branches are costed on the UNet alone: leave out --controlnet and --ip-adapter",
                                 param_hint="--branches")
    if branches:
        return _emit_branches(source, spec, fmt, output, config=config, variant=variant, allow_pickle=allow_pickle)
    depth = _step_depth(depth, controlnet)
    result = run(summarize, source, spec, device=device, dtype=dtype, config=config, variant=variant,
                 allow_pickle=allow_pickle, controlnets=tuple(controlnet or ()), impl=impl.value)
    view = SummaryView(depth)
    if ip_adapter is not None:
        from unetinspect.views.ip_adapter import ip_adapter_cost
        from unetinspect.render.ip_adapter_view import IPAdapterSummaryView

        view = IPAdapterSummaryView(depth, run(ip_adapter_cost, ip_adapter, result))
    emit(view, fmt, result, output, inputs=[source, config, ip_adapter])


ProfileFormat = choices("ProfileFormat", "table", "json", "csv", "markdown")


Attention = choices("Attention", "auto", "math", "flash", "efficient", "cudnn", "all")


@app.command()
def profile(
    source: SourceArg = None,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cpu, cuda or cuda:N. [default: cuda if available, else cpu]", show_default=False)] = None,
    dtype: Annotated[Optional[str], typer.Option(
        "--dtype", help="fp32, fp16 or bf16. [default: fp16 on CUDA, fp32 on CPU]", show_default=False)] = None,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs before timing.")] = 2,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed runs (each: one without hooks, "
                                        "one with).")] = 10,
    depth: DepthOpt = 1,
    batch: BatchOpt = 1,
    height: HeightOpt = None,
    width: WidthOpt = None,
    latent: LatentOpt = None,
    text_len: TextLenOpt = 77,
    sweep: Annotated[Optional[str], typer.Option(
        "--sweep", help="Time the whole step over sizes (256,512,768 or 512x768,1024) or batch sizes (batch=1,2,4) "
        "and print a latency/throughput table.", show_default=False)] = None,
    attention: Annotated[Attention, typer.Option(
        "--attention", help="Attention (SDPA) backend; 'all' compares them. Unavailable ones are reported.")
    ] = Attention.auto,
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="Profile the torch.compile'd model (whole step only: hooks cannot see inside).")] = False,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", help="Also write a Chrome/Perfetto trace of one step (blocks as named ranges) to this .json.",
        show_default=False)] = None,
    fmt: Annotated[ProfileFormat, typer.Option("--format", "-f", help="Output format.")] = ProfileFormat.table,
    output: OutputOpt = None,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    allow_pickle: AllowPickleOpt = False,
    controlnet: ControlNetOpt = None,
    branches: BranchesOpt = False,
    impl: ImplOpt = Impl.ours,
) -> None:
    """Where the time (and, on CUDA, the memory) of one denoising step goes, block by block.

    Blocks are timed with CUDA events on a GPU and perf_counter on the CPU; the step is also timed with no hooks,
    and the hooks' overhead and the time outside any block are printed. See docs/measuring.md.

    Examples:

      [bold]unetinspect profile[/]                              SD 1.5 at 512×512 on the default device

      [bold]unetinspect profile sdxl --height 1024 --width 1024 --trace sdxl.json[/]

      [bold]unetinspect profile sd15 --sweep batch=1,2,4 --attention all[/]

      [bold]unetinspect profile sdxl --impl diffusers[/]       diffusers' own class, the same weights
    """
    comparing = sweep is not None or attention == Attention.all
    if branches and (comparing or compile_model or trace is not None or controlnet):
        raise typer.BadParameter("branch latencies come from one profile of the UNet's layers: leave out --sweep, "
                                 "--attention all, --compile, --trace and --controlnet", param_hint="--branches")
    if trace is not None and comparing:
        raise typer.BadParameter("a trace records one profile: leave out --sweep and --attention all",
                                 param_hint="--trace")
    inputs = [i for i in (source, config) if i]
    for path in (output, trace):
        refuse_output_early(path, *inputs)
    spec = input_spec(batch, height, width, text_len, latent)
    options = dict(device=device, dtype=dtype, warmup=warmup, repeat=repeat, compile=compile_model, config=config,
                   variant=variant, allow_pickle=allow_pickle, controlnets=tuple(controlnet or ()),
                   impl=impl.value)
    depth = _step_depth(depth, controlnet)
    show_bar = fmt != ProfileFormat.json and sys.stderr.isatty() and (output is not None or sys.stdout.isatty())
    if comparing:
        _profile_sweep(source, spec, sweep, attention.value, options, fmt, output, inputs, show_bar)
    elif branches:
        _profile_branches(source, spec, attention.value, options, fmt, output, show_bar)
    else:
        _profile_step(source, spec, depth, attention.value, options, fmt, output, trace, inputs, show_bar)


def _step_depth(depth: int, controlnets: list[str] | None) -> int:
    """With ControlNets the step's top-level calls are the models themselves: show their blocks by default."""
    return 2 if controlnets and depth == 1 else depth


def _profile_step(source: str | None, spec: Any, depth: int, attention: str, options: dict[str, Any], fmt: Enum,
                  output: Path | None, trace: Path | None, inputs: list[str], show_bar: bool) -> None:
    """`profile` of one step, block by block (and its Chrome trace with --trace)."""
    from unetinspect.views.profile import profile as profile_source
    from unetinspect.render.export import write_output
    from unetinspect.render.profile_view import ProfileView, progress_bar

    with progress_bar(console(stderr=True), show_bar) as progress:
        result = run(profile_source, source, spec, depth=depth, attention=attention, chrome_trace=trace is not None,
                     progress=progress, **options)
    if trace is not None:
        say(f"wrote {run(write_output, trace, result.chrome_trace, inputs)}")
    emit(ProfileView(), fmt, result, output, inputs)


def _profile_branches(source: str | None, spec: Any, attention: str, options: dict[str, Any], fmt: Enum,
                      output: Path | None, show_bar: bool) -> None:
    """`profile --branches`: every layer timed, then each shallow branch's latency as the sum of its layers'."""
    from unetinspect.views.profile import profile as profile_source
    from unetinspect.render import profile_view

    with profile_view.progress_bar(console(stderr=True), show_bar) as progress:
        result = run(profile_source, source, spec, depth=2, attention=attention, progress=progress, **options)
    latencies = {row.name: row.latency.median for row in result.blocks}
    _emit_branches(source, spec, fmt, output, latencies, result.totals.step.median,
                   **{key: options[key] for key in ("config", "variant", "allow_pickle")})


def _profile_sweep(source: str | None, spec: Any, sizes: str | None, attention: str, options: dict[str, Any],
                   fmt: Enum, output: Path | None, inputs: list[str], show_bar: bool) -> None:
    """`profile --sweep` / `--attention all`: the whole step over sizes and backends."""
    from unetinspect.views.profile import parse_sweep
    from unetinspect.views.profile import sweep as sweep_source
    from unetinspect.render.profile_view import SweepView, progress_bar

    specs = run(parse_sweep, sizes, spec) if sizes is not None else [("as given", spec)]
    with progress_bar(console(stderr=True), show_bar) as progress:
        result = run(sweep_source, source, specs, attention, progress=progress, **options)
    emit(SweepView(), fmt, result, output, inputs)


DiagramLevel = choices("DiagramLevel", "blocks", "layers")


DiagramFormat = choices("DiagramFormat", "svg", "png", "pdf", "dot")


Direction = choices("Direction", "TB", "LR")


Theme = choices("Theme", "light", "dark")


@app.command()
def diagram(
    source: SourceArg = None,
    output: OutputOpt = None,
    fmt: Annotated[Optional[DiagramFormat], typer.Option(
        "--format", "-f", help="svg, png, pdf or dot. [default: from the output's suffix]", show_default=False)] = None,
    level: Annotated[DiagramLevel, typer.Option("--level", "-l", help="blocks: the U of blocks; layers: each "
                                                "block opened into its resnets, transformers and resamplers.")]
    = DiagramLevel.blocks,
    focus: Annotated[Optional[str], typer.Option("--focus", help="Draw one module opened down to its leaves "
                                                 "instead, e.g. down_blocks.1 or mid_block.attentions.0.")] = None,
    direction: Annotated[Direction, typer.Option("--direction", help="TB: the U upright; LR: on its side.")]
    = Direction.TB,
    no_shapes: Annotated[bool, typer.Option("--no-shapes", help="No tensor shapes on the edges.")] = False,
    no_params: Annotated[bool, typer.Option("--no-params", help="No parameter counts.")] = False,
    theme: Annotated[Theme, typer.Option("--theme", help="light or dark background.")] = Theme.light,
    batch: BatchOpt = 1,
    height: HeightOpt = None,
    width: WidthOpt = None,
    latent: LatentOpt = None,
    text_len: TextLenOpt = 77,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    allow_pickle: AllowPickleOpt = False,
    impl: ImplOpt = Impl.ours,
    controlnet: ControlNetOpt = None,
) -> None:
    """Draw the UNet as the U it is: blocks, skip connections, time and text conditioning. -o FILE [default: unet.svg]

    Shapes come from a forward pass on the meta device (no weights read). svg, png and pdf need Graphviz's
    [bold]dot[/]; without it the .dot source is written beside the file asked for. Node ids are module paths,
    so the .dot files of two configs diff line by line.

    Examples:

      [bold]unetinspect diagram[/]                                   SD 1.5, blocks, unet.svg

      [bold]unetinspect diagram sdxl --level layers -o sdxl.png[/]   every resnet and transformer of SDXL

      [bold]unetinspect diagram --focus up_blocks.1.resnets.0 -o resnet.pdf[/]
    """
    refuse_output_early(output or Path("unet.svg"), source, config)
    from unetinspect.views.graph import diagram_graph
    from unetinspect.render.graph import Style, write_diagram

    spec = input_spec(batch, height, width, text_len, latent)
    graph = run(diagram_graph, source, spec, level.value, focus, config=config, variant=variant,
                allow_pickle=allow_pickle, impl=impl.value, controlnets=tuple(controlnet or ()))
    style = Style(direction=direction.value, shapes=not no_shapes, params=not no_params, theme=theme.value)
    path = run(write_diagram, graph, output or Path("unet.svg"), fmt.value if fmt else None, style,
               inputs=tuple(i for i in (source, config) if i))
    say(f"wrote {path}")


WeightsFormat = choices("WeightsFormat", "table", "json")


@app.command()
def weights(
    checkpoint: Annotated[str, typer.Argument(
        help="A .safetensors file (original single-file or diffusers), a .ckpt/.pt/.pth/.bin with --allow-pickle, "
             "or a diffusers folder.", metavar="CHECKPOINT", show_default=False)],
    pattern: Annotated[Optional[str], typer.Argument(
        help="List only the tensors whose name (the file's or ours) matches this glob, e.g. 'down_blocks.1.*'.",
        metavar="PATTERN", show_default=False)] = None,
    keys: Annotated[bool, typer.Option("--keys", "-k", help="List the tensors with shapes and dtypes.")] = False,
    fmt: Annotated[WeightsFormat, typer.Option("--format", "-f", help="Output format.")] = WeightsFormat.table,
    output: OutputOpt = None,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """What a checkpoint holds, from its headers alone: layout, parts (UNet, VAE, text encoders), dtypes, sizes,
    the config (inferred for original single files) and its nearest preset, UNet parameters per block, metadata.

    No tensor data is read, so a multi-GB file takes milliseconds.

    Examples:

      [bold]unetinspect weights v1-5-pruned-emaonly.safetensors[/]

      [bold]unetinspect weights sd_xl_base_1.0.safetensors --keys 'down_blocks.1.*'[/]

      [bold]unetinspect weights ./stable-diffusion-2-1 --variant fp16 -f json -o weights.json[/]
    """
    refuse_output_early(output, checkpoint, config)
    from unetinspect.render.weights_view import WeightsView
    from unetinspect.views.weights import inspect_weights

    report = run(inspect_weights, checkpoint, config=config, variant=variant, allow_pickle=allow_pickle)
    emit(WeightsView(pattern, listing=keys or pattern is not None), fmt, report, output, [checkpoint, config])


LoraFormat = choices("LoraFormat", "table", "json")


@app.command()
def lora(
    file: Annotated[str, typer.Argument(help="A LoRA .safetensors file (kohya, diffusers/PEFT, LyCORIS LoHa/LoKr).",
                                        metavar="FILE", show_default=False)],
    base: Annotated[Optional[str], typer.Option(
        "--base", help="The UNet to check it against (preset, folder, file). [default: the preset it fits best]",
        show_default=False)] = None,
    fmt: Annotated[LoraFormat, typer.Option("--format", "-f", help="Output format.")] = LoraFormat.table,
    output: OutputOpt = None,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Which blocks a LoRA touches, at what rank, alpha and strength (‖scale·up@down‖), and whether it fits a base.

    Every module is mapped onto our UNet's module paths; the LoRA Block Weight names (IN01…OUT11, MID) are shown
    beside the blocks. With --base, modules that do not fit are listed with the reason (no such module, shape).

    Examples:

      [bold]unetinspect lora my_style.safetensors[/]

      [bold]unetinspect lora sdxl_lora.safetensors --base sd15[/]     why a loader says "lora key not loaded"
    """
    refuse_output_early(output, file, base)
    from unetinspect.views.lora import analyze_lora
    from unetinspect.render.lora_view import LoraView

    emit(LoraView(), fmt, run(analyze_lora, file, base=base, allow_pickle=allow_pickle), output, inputs=[file, base])


CompareFormat = choices("CompareFormat", "table", "json", "csv", "markdown")


@app.command()
def compare(
    source_a: Annotated[str, typer.Argument(help="First UNet: preset, config.json, diffusers folder or checkpoint.",
                                            metavar="A")],
    source_b: Annotated[Optional[str], typer.Argument(help="Second UNet (omit with --impl diffusers).",
                                                      metavar="[B]", show_default=False)] = None,
    impl: Annotated[Impl, typer.Option("--impl", help="ours: compare A with B. diffusers: compare our model of A "
                                       "with diffusers' own (needs diffusers installed).")] = Impl.ours,
    batch: BatchOpt = 1,
    height: HeightOpt = None,
    width: WidthOpt = None,
    latent: LatentOpt = None,
    text_len: TextLenOpt = 77,
    device: DeviceOpt = "meta",
    latency: Annotated[bool, typer.Option("--profile", help="Also time both block by block (CUDA when "
                                          "available, else the CPU; random weights for configs).")] = False,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed runs with --profile.")] = 5,
    weights: Annotated[bool, typer.Option("--weights", help="Also compare the weights of two checkpoints of the "
                                          "same structure, block by block: ‖B−A‖/‖A‖, cosine, tensors changed.")]
    = False,
    fmt: Annotated[CompareFormat, typer.Option("--format", "-f", help="Output format.")] = CompareFormat.table,
    output: OutputOpt = None,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Two UNets side by side, block against block: parameters, FLOPs and output shapes, with the differences.

    Blocks are paired by path when both UNets have the same blocks, else by stage (down level k, mid, up
    level k; level 0 is full resolution). Each runs at its own default size unless --height/--width are given.

    Examples:

      [bold]unetinspect compare sd15 sdxl[/]                 where SDXL's 3× parameters went

      [bold]unetinspect compare sd15 ./my-finetune/unet[/]    a fine-tune against its base

      [bold]unetinspect compare sdxl --impl diffusers[/]      our model against diffusers', block by block

      [bold]unetinspect compare sd15 sd21 --height 512 --width 512 --profile[/]   and their latency

      [bold]unetinspect compare base.safetensors ./finetune/unet --weights[/]   what a fine-tune changed
      [bold]unetinspect compare sd15 sdxl -o diff.html[/]   both diagrams side by side, as one HTML page
    """
    refuse_output_early(output, source_a, source_b)
    from unetinspect.views.compare import compare as compare_sources
    from unetinspect.render.compare_view import CompareView

    spec = input_spec(batch, height, width, text_len, latent)
    result = run(compare_sources, source_a, source_b, spec, impl=impl.value, device=device, profile=latency,
                 repeat=repeat, allow_pickle=allow_pickle, weights=weights)
    if output is not None and output.suffix.lower() in (".html", ".htm"):  # the side-by-side page
        from unetinspect.views.report import comparison_graphs
        from unetinspect.render.export import write_output
        from unetinspect.render.report import comparison_html

        graphs = run(comparison_graphs, source_a, source_b, spec, impl=impl.value, allow_pickle=allow_pickle)
        say(f"wrote {run(write_output, output, comparison_html(result, graphs), [source_a, source_b])}")
        return
    emit(CompareView(), fmt, result, output, inputs=[source_a, source_b])


@app.command()
def report(
    source: SourceArg = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    latency: Annotated[bool, typer.Option("--profile", help="Also time every layer (CUDA when available, else "
                                          "the CPU; random weights for configs) and colour by latency.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="Device for --profile. [default: cuda if "
                                                  "available, else cpu]", show_default=False)] = None,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed runs with --profile.")] = 5,
    batch: BatchOpt = 1,
    height: HeightOpt = None,
    width: WidthOpt = None,
    latent: LatentOpt = None,
    text_len: TextLenOpt = 77,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """One self-contained HTML page: the diagram coloured by a metric you pick, a module tree to sort and open,
    and each block's layers on a click. Opens from disk, offline; attach it to an issue or mail it.

    Examples:

      [bold]unetinspect report sdxl -o sdxl.html[/]

      [bold]unetinspect report sd15 --profile --device cuda -o sd15.html[/]   colour by measured latency too
    """
    from unetinspect.views.report import build_report
    from unetinspect.render.export import check_output_path, write_output
    from unetinspect.render.report import report_html

    inputs = [i for i in (source, config) if i]
    run(check_output_path, output, inputs)  # a bad path fails now, not after the tracing and drawing
    spec = input_spec(batch, height, width, text_len, latent)
    result = run(build_report, source, spec, profile=latency, device=device, repeat=repeat, config=config,
                 variant=variant, allow_pickle=allow_pickle)
    say(f"wrote {run(write_output, output, run(report_html, result), inputs)}")


MemoryFormat = choices("MemoryFormat", "table", "json", "csv", "markdown")


@app.command()
def memory(
    source: SourceArg = None,
    train: Annotated[bool, typer.Option("--train", help="A training step: per block the bytes autograd keeps "
                                        "for backward, and weights, gradients, optimizer state and the peak.")]
    = False,
    checkpointing: Annotated[bool, typer.Option("--checkpointing", help="Gradient checkpointing as diffusers' "
                                                "enable_gradient_checkpointing(): resnets and transformer "
                                                "blocks recomputed in backward.")] = False,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adamw, adamw-8bit, sgd (no momentum) or "
                                           "adafactor.")] = "adamw",
    mixed: Annotated[Optional[str], typer.Option("--mixed", help="fp16 or bf16: half weights and activations, "
                                                 "fp32 master weights.", show_default=False)] = None,
    lora_rank: Annotated[Optional[int], typer.Option("--lora-rank", help="Train LoRA adapters of this rank "
                                                     "only.", show_default=False)] = None,
    lora_targets: Annotated[str, typer.Option("--lora-targets", help="The modules LoRA adapts, as PEFT's "
                                              "target_modules.")] = ",".join(("to_k", "to_q", "to_v", "to_out.0")),
    frozen: Annotated[Optional[list[str]], typer.Option("--frozen", help="Freeze the parameters under this "
                                                        "module path (repeat for several), e.g. down_blocks.0.",
                                                        show_default=False)] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="The totals over sizes: batch=1,2,4 or pixel "
                                                 "sizes 512,768 or 512x768.", show_default=False)] = None,
    budget: Annotated[Optional[str], typer.Option("--budget", help="With --sweep, where the peak crosses this "
                                                  "much memory, e.g. 24GiB or 80GB.", show_default=False)] = None,
    depth: DepthOpt = 1,
    batch: BatchOpt = 1,
    height: HeightOpt = None,
    width: WidthOpt = None,
    latent: LatentOpt = None,
    text_len: TextLenOpt = 77,
    device: DeviceOpt = "meta",
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="fp32, fp16 or bf16. [default: fp32, or "
                                                 "--mixed's]", show_default=False)] = None,
    fmt: Annotated[MemoryFormat, typer.Option("--format", "-f", help="Output format.")] = MemoryFormat.table,
    output: OutputOpt = None,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """What a step costs in memory, measured: inference (weights + the most activations alive at once) or, with
    --train, per block the bytes saved for backward and the totals of a fine-tuning step.

    Saved tensors are measured with autograd's own hooks on the meta device: SDXL at 1024² takes seconds and no
    memory. Use --device cpu to measure real tensors.

    Examples:

      [bold]unetinspect memory sdxl --train --height 1024 --width 1024 --checkpointing[/]

      [bold]unetinspect memory sd15 --train --lora-rank 32 --optimizer adamw-8bit --mixed fp16[/]

      [bold]unetinspect memory sdxl --train --mixed bf16 --sweep batch=1,2,4,8 --budget 24GiB[/]
    """
    refuse_output_early(output, source, config)
    from unetinspect.views import memory as views
    from unetinspect.render.memory_view import MemorySweepView, MemoryView

    spec = input_spec(batch, height, width, text_len, latent)
    training = views.Training(optimizer=optimizer, checkpointing=checkpointing, mixed=mixed, lora_rank=lora_rank,
                              lora_targets=tuple(lora_targets.split(",")), frozen=tuple(frozen or ()))
    options = dict(train=train, training=training, device=device, dtype=dtype, config=config, variant=variant,
                   allow_pickle=allow_pickle)
    if budget is not None and sweep is None:
        raise typer.BadParameter("a budget is checked over sizes: add --sweep, e.g. --sweep batch=1,2,4",
                                 param_hint="--budget")
    if sweep is not None:
        from unetinspect.views.profile import parse_sweep

        limit = run(views.parse_bytes, budget) if budget is not None else None
        result = run(views.memory_sweep, source, run(parse_sweep, sweep, spec), budget=limit, **options)
        return emit(MemorySweepView(), fmt, result, output, inputs=[source, config])
    emit(MemoryView(depth), fmt, run(views.memory, source, spec, **options), output, inputs=[source, config])


def main() -> None:
    """Entry point of the console script."""
    app()
