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

import click
import typer
import typer.core
from rich.console import Console
from rich.text import Text

from unetinspect import __version__
from unetinspect.cli_options import SIZES, SOURCE, Options, format_choices, format_option, with_options
from unetinspect.errors import UnetInspectError
from unetinspect.render.attention_view import AttentionView
from unetinspect.render.branches_view import BranchesView
from unetinspect.render.compare_view import CompareView
from unetinspect.render.diagram_view import DiagramView
from unetinspect.render.lora_view import LoraView
from unetinspect.render.memory_view import MemoryView
from unetinspect.render.precision_view import PrecisionView
from unetinspect.render.presets_view import PresetsView
from unetinspect.render.profile_view import ProfileView
from unetinspect.render.summary_view import SummaryView
from unetinspect.render.weights_view import WeightsView

# torch warns at import when numpy is not installed (a fresh venv: torch does not depend on it); nothing here uses
# numpy, so a newcomer's first command must not open with that warning. Set before any command imports torch.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)

class Commands(typer.core.TyperGroup):
    """The command group. Ctrl-C at any point of any command — importing torch, loading weights, timing, writing —
    ends it with exit code 130 (what shells expect of an interrupted program) and one line, instead of click's
    "Aborted!" and exit code 1; outputs are written whole or not at all (render/export), so nothing is left
    half-written."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            say("interrupted", "error")
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=Commands,
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


# ---- options several commands take (the source and size options are cli_options' groups) -------------------------

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
DeviceOpt = Annotated[str, typer.Option("--device", help="meta (shapes only, instant), cpu, cuda, cuda:N or auto.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="fp32, fp16 or bf16.")]
Impl = choices("Impl", "ours", "diffusers")
ImplOpt = Annotated[Impl, typer.Option("--impl", help="ours: our model of the source. diffusers: diffusers' own "
                                       "class with the same weights (needs diffusers installed).")]
BranchesOpt = Annotated[bool, typer.Option("--branches", help="Cost of each shallow branch a DeepCache-style "
                                           "method runs (everything deeper than a skip reused): FLOPs, MACs, share "
                                           "of the step, parameters; with profile, latency.")]


def say(message: str, label: str | None = None, style: str = "bold red") -> None:
    """One line on stderr, `label:` styled and the message as inert text: messages quote paths, tensor names and
    config values from strangers, which must neither be read as rich markup nor reach the terminal as escapes."""
    inert = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(message.split()))
    line = Text.assemble((f"{label}:", style), " ", inert) if label else Text(inert)
    console(stderr=True).print(line, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """Warnings in the tool's own voice: one `warning:` line, not Python's two with a source line."""
    say(str(message), "warning", "yellow")


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
    except Exception as exc:  # a bug of ours: still one line, with the way to see more
        if State.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        say(f"internal error: {type(exc).__name__}: {first} — rerun with --debug for the traceback and report it",
            "error")
        raise typer.Exit(1) from None


def emit(view: Any, fmt: Enum | str, result: Any, output: Path | None = None, inputs: list[str | None] = ()) -> None:
    """Show a result through its view in the format asked for: on stdout, or written whole to `output` (never over
    one of the command's `inputs`); a picture or a page is a format of its view too. Every command answers here."""
    from unetinspect.render import formats

    fmt = fmt.value if isinstance(fmt, Enum) else fmt
    path = run(formats.emit, view, fmt, result, output=output, inputs=inputs, console=console())
    if path is not None:
        say(f"wrote {path}")


# ---- commands -----------------------------------------------------------------------------------------------------

# Each command's --format choices are the formats its view declares.
PresetsFormat, SummaryFormat, ProfileFormat, WeightsFormat, LoraFormat, CompareFormat, DiagramFormat = (
    format_choices(view) for view in (PresetsView, SummaryView, ProfileView, WeightsView, LoraView, CompareView,
                                      DiagramView))


@app.command()
def presets(
    fmt: format_option(PresetsFormat) = PresetsFormat.table,
    output: OutputOpt = None,
) -> None:
    """List the built-in configs with their parameter counts.

    Example: [bold]unetinspect presets[/]
    """
    from unetinspect.render.presets_view import PresetRow

    def build():
        from unetinspect.presets import PRESETS
        from unetinspect.sources.loading import count_parameters, load_unet

        return [PresetRow(p.name, count_parameters(load_unet(p.name, device="meta")), p.description)
                for p in PRESETS.values()]

    emit(PresetsView(), fmt, run(build), output)


def _emit_branches(source: str | None, spec: Any, fmt: Enum, output: Path | None,
                   latencies: dict[str, float] | None = None, step_ms: float | None = None, **options: Any) -> None:
    """`--branches` of summary and profile: one table of the shallow branches, in the asked format."""
    from unetinspect.views.branches import branch_costs

    result = run(branch_costs, source, spec, latencies=latencies, step_ms=step_ms, **options)
    table = fmt.value not in BranchesView.formats()  # a list of branches has no tree: the table stands in for it
    emit(BranchesView(), "table" if table else fmt, result, output, inputs=[source, options.get("config")])


@app.command()
@with_options(SOURCE, SIZES)
def summary(
    source: SourceArg = None,
    depth: DepthOpt = 1,
    device: DeviceOpt = "meta",
    dtype: DtypeOpt = "fp32",
    fmt: format_option(SummaryFormat) = SummaryFormat.table,
    output: OutputOpt = None,
    ip_adapter: Annotated[Optional[str], typer.Option(
        "--ip-adapter", help="Add an IP-Adapter .safetensors: its parameters per block and the FLOPs of the image "
        "tokens in every cross-attention (table or json).", show_default=False)] = None,
    controlnet: ControlNetOpt = None,
    branches: BranchesOpt = False,
    impl: ImplOpt = Impl.ours,
    *,
    opts: Options,
) -> None:
    """Every block's input and output shapes, parameters and FLOPs (attention included), and the skip connections.

    Runs on the meta device by default: no weights are read or allocated, so even SDXL takes about a second.
    A checkpoint's safetensors header is checked against the model without reading its tensors.

    Examples:

      [bold]unetinspect summary[/]                      SD 1.5 at 512×512, one row per block

      [bold]unetinspect summary sdxl --depth 2[/]       SDXL, down to resnets and transformers

      [bold]unetinspect summary ./my-model/unet --height 768 --width 768 -f json -o summary.json[/]
    """
    refuse_output_early(output, source, opts.loading["config"], ip_adapter)
    from unetinspect.views.summary import refuse_branches_with_addons, step_depth, summarize

    spec = opts.spec()
    run(refuse_branches_with_addons, branches, controlnet, ip_adapter)
    if branches:
        return _emit_branches(source, spec, fmt, output, **opts.loading)
    result = run(summarize, source, spec, device=device, dtype=dtype, controlnets=tuple(controlnet or ()),
                 impl=impl.value, **opts.loading)
    view = SummaryView(step_depth(depth, controlnet))
    if ip_adapter is not None:
        from unetinspect.render.ip_adapter_view import IPAdapterSummaryView
        from unetinspect.views.ip_adapter import ip_adapter_cost

        view = IPAdapterSummaryView(view.depth, run(ip_adapter_cost, ip_adapter, result))
    emit(view, fmt, result, output, inputs=[source, opts.loading["config"], ip_adapter])


Attention = choices("Attention", "auto", "math", "flash", "efficient", "cudnn", "all")


@app.command()
@with_options(SOURCE, SIZES)
def profile(
    source: SourceArg = None,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cpu, cuda or cuda:N. \\[default: cuda if available, else cpu]", show_default=False)] = None,
    dtype: Annotated[Optional[str], typer.Option(
        "--dtype", help="fp32, fp16 or bf16. \\[default: fp16 on CUDA, fp32 on CPU]", show_default=False)] = None,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs before timing.")] = 2,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed runs (each: one without hooks, "
                                        "one with).")] = 10,
    max_seconds: Annotated[float, typer.Option(
        "--max-seconds", min=0, help="Refuse, before the timed runs, work estimated (from its FLOPs and one batch-1 "
        "run) to take longer than this; an estimate over 10 s is printed.")] = 600.0,
    depth: DepthOpt = 1,
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
    fmt: format_option(ProfileFormat) = ProfileFormat.table,
    output: OutputOpt = None,
    controlnet: ControlNetOpt = None,
    branches: BranchesOpt = False,
    impl: ImplOpt = Impl.ours,
    *,
    opts: Options,
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
    from unetinspect.views.profile import profile_mode

    mode = run(profile_mode, sweep=sweep is not None, attention=attention.value, compile=compile_model,
               chrome_trace=trace is not None, branches=branches, controlnets=tuple(controlnet or ()))
    inputs = [i for i in (source, opts.loading["config"]) if i]
    for path in (output, trace):
        refuse_output_early(path, *inputs)
    spec = opts.spec()
    options = dict(device=device, dtype=dtype, warmup=warmup, repeat=repeat, max_seconds=max_seconds,
                   compile=compile_model, controlnets=tuple(controlnet or ()), impl=impl.value, **opts.loading)
    show_bar = fmt.value != "json" and sys.stderr.isatty() and (output is not None or sys.stdout.isatty())
    if mode == "sweep":
        _profile_sweep(source, spec, sweep, attention.value, options, fmt, output, inputs, show_bar)
    elif mode == "branches":
        _profile_branches(source, spec, attention.value, options, fmt, output, show_bar)
    else:
        from unetinspect.views.summary import step_depth

        _profile_step(source, spec, step_depth(depth, controlnet), attention.value, options, fmt, output, trace,
                      inputs, show_bar)


def _profile_step(source: str | None, spec: Any, depth: int, attention: str, options: dict[str, Any], fmt: Enum,
                  output: Path | None, trace: Path | None, inputs: list[str], show_bar: bool) -> None:
    """`profile` of one step, block by block (and its Chrome trace with --trace)."""
    from unetinspect.render.profile_view import ChromeTraceView, progress_bar
    from unetinspect.views.profile import profile as profile_source

    with progress_bar(console(stderr=True), show_bar) as progress:
        result = run(profile_source, source, spec, depth=depth, attention=attention, chrome_trace=trace is not None,
                     progress=progress, **options)
    if trace is not None:
        emit(ChromeTraceView(), "trace", result, trace, inputs)
    emit(ProfileView(), fmt, result, output, inputs)


def _profile_branches(source: str | None, spec: Any, attention: str, options: dict[str, Any], fmt: Enum,
                      output: Path | None, show_bar: bool) -> None:
    """`profile --branches`: every layer timed, then each shallow branch's latency as the sum of its layers'."""
    from unetinspect.render import profile_view
    from unetinspect.views.profile import profile as profile_source

    with profile_view.progress_bar(console(stderr=True), show_bar) as progress:
        result = run(profile_source, source, spec, depth=2, attention=attention, progress=progress, **options)
    latencies = {row.name: row.latency.median for row in result.blocks}
    _emit_branches(source, spec, fmt, output, latencies, result.totals.step.median,
                   **{key: options[key] for key in ("config", "variant", "allow_pickle")})


def _profile_sweep(source: str | None, spec: Any, sizes: str | None, attention: str, options: dict[str, Any],
                   fmt: Enum, output: Path | None, inputs: list[str], show_bar: bool) -> None:
    """`profile --sweep` / `--attention all`: the whole step over sizes and backends."""
    from unetinspect.render.profile_view import SweepView, progress_bar
    from unetinspect.views.profile import parse_sweep
    from unetinspect.views.profile import sweep as sweep_source

    specs = run(parse_sweep, sizes, spec) if sizes is not None else [("as given", spec)]
    with progress_bar(console(stderr=True), show_bar) as progress:
        result = run(sweep_source, source, specs, attention, progress=progress, **options)
    emit(SweepView(), fmt, result, output, inputs)


DiagramLevel = choices("DiagramLevel", "blocks", "layers")
Direction = choices("Direction", "TB", "LR")
Theme = choices("Theme", "light", "dark")


@app.command()
@with_options(SIZES, SOURCE)
def diagram(
    source: SourceArg = None,
    output: OutputOpt = None,
    fmt: format_option(Optional[DiagramFormat], "svg, png, pdf or dot. \\[default: from the output's suffix]")
    = None,
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
    impl: ImplOpt = Impl.ours,
    controlnet: ControlNetOpt = None,
    *,
    opts: Options,
) -> None:
    """Draw the UNet as the U it is: blocks, skip connections, time and text conditioning. -o FILE \\[default: unet.svg]

    Shapes come from a forward pass on the meta device (no weights read). svg, png and pdf need Graphviz's
    [bold]dot[/]; without it the .dot source is written beside the file asked for. Node ids are module paths,
    so the .dot files of two configs diff line by line.

    Examples:

      [bold]unetinspect diagram[/]                                   SD 1.5, blocks, unet.svg

      [bold]unetinspect diagram sdxl --level layers -o sdxl.png[/]   every resnet and transformer of SDXL

      [bold]unetinspect diagram --focus up_blocks.1.resnets.0 -o resnet.pdf[/]
    """
    output = output or Path("unet.svg")
    inputs = [source, opts.loading["config"]]
    refuse_output_early(output, *inputs)
    from unetinspect.render.diagram_view import format_of
    from unetinspect.render.graph import Style
    from unetinspect.views.graph import diagram_graph

    graph = run(diagram_graph, source, opts.spec(), level.value, focus, impl=impl.value,
                controlnets=tuple(controlnet or ()), **opts.loading)
    kind = run(format_of, output, fmt.value if fmt else None)  # after the source: its errors come first
    style = Style(direction=direction.value, shapes=not no_shapes, params=not no_params, theme=theme.value)
    emit(DiagramView(style), kind, graph, output, inputs)


@app.command()
@with_options(SOURCE)
def weights(
    checkpoint: Annotated[str, typer.Argument(
        help="A .safetensors file (original single-file or diffusers), a .ckpt/.pt/.pth/.bin with --allow-pickle, "
             "or a diffusers folder.", metavar="CHECKPOINT", show_default=False)],
    pattern: Annotated[Optional[str], typer.Argument(
        help="List only the tensors whose name (the file's or ours) matches this glob, e.g. 'down_blocks.1.*'.",
        metavar="PATTERN", show_default=False)] = None,
    keys: Annotated[bool, typer.Option("--keys", "-k", help="List the tensors with shapes and dtypes.")] = False,
    fmt: format_option(WeightsFormat) = WeightsFormat.table,
    output: OutputOpt = None,
    *,
    opts: Options,
) -> None:
    """What a checkpoint holds, from its headers alone: layout, parts (UNet, VAE, text encoders), dtypes, sizes,
    the config (inferred for original single files) and its nearest preset, UNet parameters per block, metadata.

    No tensor data is read, so a multi-GB file takes milliseconds.

    Examples:

      [bold]unetinspect weights v1-5-pruned-emaonly.safetensors[/]

      [bold]unetinspect weights sd_xl_base_1.0.safetensors --keys 'down_blocks.1.*'[/]

      [bold]unetinspect weights ./stable-diffusion-2-1 --variant fp16 -f json -o weights.json[/]
    """
    refuse_output_early(output, checkpoint, opts.loading["config"])
    from unetinspect.views.weights import inspect_weights

    report = run(inspect_weights, checkpoint, **opts.loading)
    emit(WeightsView(pattern, listing=keys or pattern is not None), fmt, report, output,
         [checkpoint, opts.loading["config"]])


@app.command()
def lora(
    file: Annotated[str, typer.Argument(help="A LoRA .safetensors file (kohya, diffusers/PEFT, LyCORIS LoHa/LoKr).",
                                        metavar="FILE", show_default=False)],
    base: Annotated[Optional[str], typer.Option(
        "--base", help="The UNet to check it against (preset, folder, file). \\[default: the preset it fits best]",
        show_default=False)] = None,
    fmt: format_option(LoraFormat) = LoraFormat.table,
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

    emit(LoraView(), fmt, run(analyze_lora, file, base=base, allow_pickle=allow_pickle), output, inputs=[file, base])


@app.command()
@with_options(SIZES)
def compare(
    source_a: Annotated[str, typer.Argument(help="First UNet: preset, config.json, diffusers folder or checkpoint.",
                                            metavar="A")],
    source_b: Annotated[Optional[str], typer.Argument(help="Second UNet (omit with --impl diffusers).",
                                                      metavar="[B]", show_default=False)] = None,
    impl: Annotated[Impl, typer.Option("--impl", help="ours: compare A with B. diffusers: compare our model of A "
                                       "with diffusers' own (needs diffusers installed).")] = Impl.ours,
    device: DeviceOpt = "meta",
    latency: Annotated[bool, typer.Option("--profile", help="Also time both block by block (CUDA when "
                                          "available, else the CPU; random weights for configs).")] = False,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed runs with --profile.")] = 5,
    weights: Annotated[bool, typer.Option("--weights", help="Also compare the weights of two checkpoints of the "
                                          "same structure, block by block: ‖B−A‖/‖A‖, cosine, tensors changed.")]
    = False,
    fmt: format_option(CompareFormat, "Output format (-o FILE.html: the side-by-side page).")
    = CompareFormat.table,
    output: OutputOpt = None,
    allow_pickle: AllowPickleOpt = False,
    *,
    opts: Options,
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

    spec = opts.spec()
    result = run(compare_sources, source_a, source_b, spec, impl=impl.value, device=device, profile=latency,
                 repeat=repeat, allow_pickle=allow_pickle, weights=weights)
    if output is not None and output.suffix.lower() in (".html", ".htm"):  # the side-by-side page
        from unetinspect.render.report import ComparisonPage, ComparisonPageView
        from unetinspect.views.report import comparison_graphs

        graphs = run(comparison_graphs, source_a, source_b, spec, impl=impl.value, allow_pickle=allow_pickle)
        return emit(ComparisonPageView(), "html", ComparisonPage(result, graphs), output, [source_a, source_b])
    emit(CompareView(), fmt, result, output, inputs=[source_a, source_b])


@app.command()
@with_options(SIZES, SOURCE)
def report(
    source: SourceArg = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    latency: Annotated[bool, typer.Option("--profile", help="Also time every layer (CUDA when available, else "
                                          "the CPU; random weights for configs) and colour by latency.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="Device for --profile. \\[default: cuda if "
                                                  "available, else cpu]", show_default=False)] = None,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed runs with --profile.")] = 5,
    *,
    opts: Options,
) -> None:
    """One self-contained HTML page: the diagram coloured by a metric you pick, a module tree to sort and open,
    and each block's layers on a click. Opens from disk, offline; attach it to an issue or mail it.

    Examples:

      [bold]unetinspect report sdxl -o sdxl.html[/]

      [bold]unetinspect report sd15 --profile --device cuda -o sd15.html[/]   colour by measured latency too
    """
    inputs = [source, opts.loading["config"]]
    refuse_output_early(output, *inputs)  # a bad path fails now, not after the tracing and drawing
    from unetinspect.render.report import ReportView
    from unetinspect.views.report import build_report

    result = run(build_report, source, opts.spec(), profile=latency, device=device, repeat=repeat, **opts.loading)
    emit(ReportView(), "html", result, output, inputs)


AttentionFormat = format_choices(AttentionView)
Aggregate = choices("Aggregate", "mean", "daam")


@app.command()
@with_options(SIZES, SOURCE)
def attention(
    source: SourceArg = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="A .png: the grid of maps (tokens × blocks, plus all layers, with a colour bar). "
        "A .html: the report page with the maps (hover a token). Any other file: the table in --format.",
        show_default=False)] = None,
    tokens: Annotated[Optional[str], typer.Option(
        "--tokens", help="The prompt's tokens, comma-separated (\"a,photo,of,a,cat\"), laid out as CLIP lays them "
        "out: start token, the words, end token, padding.", show_default=False)] = None,
    image: Annotated[Optional[Path], typer.Option(
        "--image", help="Draw the maps over this picture (an 8-bit RGB/RGBA PNG), e.g. the generated image.",
        show_default=False)] = None,
    self_attention: Annotated[bool, typer.Option(
        "--self", help="Self-attention maps instead: where the --query pixel looks, per block.")] = False,
    query: Annotated[Optional[str], typer.Option(
        "--query", help="The query pixel of --self as Y,X in latent coordinates, e.g. 32,32.",
        show_default=False)] = None,
    blocks: Annotated[Optional[str], typer.Option(
        "--blocks", help="Only the attention layers under these paths, comma-separated, e.g. "
        "down_blocks.2,mid_block.", show_default=False)] = None,
    aggregate: Annotated[Aggregate, typer.Option(
        "--aggregate", help="How all layers become one map: mean (bilinear upsampling, mean of the layers' "
        "head-means) or daam (bicubic per head, clamped, heads summed).")] = Aggregate.mean,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cpu, cuda or cuda:N. \\[default: cuda if available, else cpu]", show_default=False)] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="fp32, fp16 or bf16. \\[default: fp32]",
                                                 show_default=False)] = None,
    fmt: format_option(AttentionFormat) = AttentionFormat.table,
    impl: ImplOpt = Impl.ours,
    *,
    opts: Options,
) -> None:
    """Which pixels each text token steers: every cross-attention layer's softmax(QKᵀ) averaged over heads, in
    one forward pass (random weights for configs, random text without a prompt). See docs/api.md for the maps
    of a real prompt, over every step of a pipeline.

    Examples:

      [bold]unetinspect attention sd15 --latent 32 -o maps.png[/]

      [bold]unetinspect attention ./unet --tokens "a,photo,of,a,cat" --image cat.png -o maps.png[/]

      [bold]unetinspect attention sd15 --self --query 16,16 --blocks up_blocks.1,up_blocks.2 -o self.png[/]

      [bold]unetinspect attention tiny --tokens "a,photo,of,a,cat" -o maps.html[/]   hover a token in the report
    """
    inputs = [i for i in (source, opts.loading["config"]) if i]
    refuse_output_early(output, *inputs)
    png = output is not None and output.suffix.lower() == ".png"
    if image is not None and not png:
        raise typer.BadParameter("a picture is drawn on in the PNG grid: give -o FILE.png", param_hint="--image")
    from unetinspect.render.attention_view import write_attention_png
    from unetinspect.render.png import read_png
    from unetinspect.views.attention import attention_maps, parse_query

    picture = run(read_png, image) if image is not None else None  # a bad picture fails before the run
    spec = opts.spec()
    result = run(attention_maps, source, spec=spec, kind="self" if self_attention else "cross",
                 blocks=tuple(b.strip() for b in (blocks or "").split(",") if b.strip()),
                 heads=aggregate == Aggregate.daam, query=run(parse_query, query) if query else None,
                 tokens=tokens, device=device, dtype=dtype, impl=impl.value, **opts.loading)
    if png:
        say(f"wrote {run(write_attention_png, result, output, aggregate.value, picture, tuple(inputs))}")
    elif output is not None and output.suffix.lower() in (".html", ".htm"):
        from unetinspect.render.report import ReportView
        from unetinspect.views.attention import attention_report

        report = run(attention_report, result, source, spec, aggregate.value, **opts.loading)
        emit(ReportView(), "html", report, output, inputs)
    else:
        emit(AttentionView(), fmt, result, output, inputs)


MemoryFormat = format_choices(MemoryView)


@app.command()
@with_options(SIZES, SOURCE)
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
    device: DeviceOpt = "meta",
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="fp32, fp16 or bf16. [default: fp32, or "
                                                 "--mixed's]", show_default=False)] = None,
    fmt: format_option(MemoryFormat) = MemoryFormat.table,
    output: OutputOpt = None,
    *,
    opts: Options,
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
    refuse_output_early(output, source, opts.loading["config"])
    from unetinspect.render.memory_view import MemorySweepView, MemoryView
    from unetinspect.views import memory as views

    spec = opts.spec()
    training = views.Training(optimizer=optimizer, checkpointing=checkpointing, mixed=mixed, lora_rank=lora_rank,
                              lora_targets=tuple(lora_targets.split(",")), frozen=tuple(frozen or ()))
    options = dict(train=train, training=training, device=device, dtype=dtype, **opts.loading)
    if budget is not None and sweep is None:
        raise typer.BadParameter("a budget is checked over sizes: add --sweep, e.g. --sweep batch=1,2,4",
                                 param_hint="--budget")
    if sweep is not None:
        from unetinspect.views.profile import parse_sweep

        limit = run(views.parse_bytes, budget) if budget is not None else None
        result = run(views.memory_sweep, source, run(parse_sweep, sweep, spec), budget=limit, **options)
        return emit(MemorySweepView(), fmt, result, output, inputs=[source, opts.loading["config"]])
    result = run(views.memory, source, spec, **options)
    emit(MemoryView(depth), fmt, result, output, inputs=[source, opts.loading["config"]])


PrecisionFormat = format_choices(PrecisionView)


@app.command()
@with_options(SOURCE, SIZES)
def precision(
    source: SourceArg = None,
    dtypes: Annotated[str, typer.Option("--dtypes", help="The formats to put each block in, alone: fp16, bf16 "
                                        "(real kernels), fp8 (e4m3), int8 (fake-quantised).")] = "fp16,bf16,fp8,int8",
    depth: Annotated[int, typer.Option("--depth", "-d", min=1, help="Test every module at this depth: 1 = the "
                                       "blocks, 2 = their layers.")] = 1,
    blocks: Annotated[Optional[str], typer.Option("--blocks", help="Test only these modules (paths, "
                                                  "comma-separated), e.g. mid_block,up_blocks.1.",
                                                  show_default=False)] = None,
    timesteps: Annotated[str, typer.Option("--timesteps", help="The timesteps to compare at (sensitivity moves "
                                           "along the loop).")] = "999,500,50",
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cpu, cuda or cuda:N. \\[default: cuda if available, else cpu]", show_default=False)] = None,
    max_seconds: Annotated[float, typer.Option(
        "--max-seconds", min=0, help="Refuse, before the runs, work estimated (timesteps × (1 + blocks × dtypes) "
        "forwards, from their FLOPs and one batch-1 run) to take longer than this.")] = 600.0,
    fmt: format_option(PrecisionFormat) = PrecisionFormat.table,
    output: OutputOpt = None,
    *,
    opts: Options,
) -> None:
    """Which blocks lose most in lower precision: each block alone in fp16, bf16, fp8 or int8, the rest float32,
    ranked by the relative error (and SQNR) of the UNet's output against its float32 forward, per timestep.

    Blocks whose output turns non-finite (a float16 overflow) come first. fp8 and int8 are fake-quantised; the
    convention is printed under the table. Use the model's real weights: random ones show the architecture only.

    Examples:

      [bold]unetinspect precision ./my-model/unet --dtypes fp16,bf16[/]

      [bold]unetinspect precision sd21 --dtypes fp16 --depth 2 --blocks mid_block --timesteps 999[/]
    """
    refuse_output_early(output, source, opts.loading["config"])
    from unetinspect.render.profile_view import progress_bar
    from unetinspect.views import precision as views

    chosen = run(views.parse_timesteps, timesteps)
    formats = run(views.parse_formats, dtypes)
    names = [b.strip() for b in blocks.split(",") if b.strip()] if blocks is not None else None
    show_bar = fmt.value != "json" and sys.stderr.isatty() and (output is not None or sys.stdout.isatty())
    with progress_bar(console(stderr=True), show_bar) as progress:
        result = run(views.precision, source, opts.spec(), dtypes=[f.name for f in formats], depth=depth,
                     blocks=names, timesteps=chosen, device=device, max_seconds=max_seconds, progress=progress,
                     **opts.loading)
    emit(PrecisionView(), fmt, result, output, inputs=[source, opts.loading["config"]])


def main() -> None:
    """Entry point of the console script."""
    app()
