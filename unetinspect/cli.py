"""The `unetinspect` commands: options in, one library call, `emit(view, fmt, result)` out. No logic of its own.

This module declares WHAT each command is — its options, help text and the library function it calls; HOW every
command runs (the Typer `app`, the top-level options, errors as one line with exit code 1 — 2 for usage errors, as
Typer does — Ctrl-C as 130, outputs checked against inputs, `emit`) is `cli_runtime`. Every command shares the
same option names (see `docs/cli.md`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from unetinspect.cli_options import (
    DEVICE,
    NAMES,
    SIZES,
    SOURCE,
    STYLE,
    TIMING,
    TRAINING,
    AllowPickleOpt,
    BranchesOpt,
    ControlNetOpt,
    DepthOpt,
    Impl,
    ImplOpt,
    LatencyOpt,
    Options,
    OutputOpt,
    SourceArg,
    choices,
    format_option,
    with_options,
)
from unetinspect.cli_runtime import HeadersCommand, app, command, emit, format_value, progress
from unetinspect.render.attention_view import AttentionView
from unetinspect.render.block_names_view import BlockNamesView
from unetinspect.render.branches_view import BranchesView
from unetinspect.render.compare_view import CompareView
from unetinspect.render.diagram_view import DiagramView
from unetinspect.render.lora_view import LoraView
from unetinspect.render.memory_view import MemoryView
from unetinspect.render.precision_view import PrecisionView
from unetinspect.render.presets_view import PresetsView
from unetinspect.render.profile_view import ProfileView
from unetinspect.render.ranges_view import RangesView
from unetinspect.render.run_view import RunView
from unetinspect.render.summary_view import SummaryView
from unetinspect.render.weights_view import WeightsView


@command()
def presets(fmt: format_option(PresetsView) = None, output: OutputOpt = None) -> None:
    """List the built-in configs with their parameter counts.

    Example: [bold]unetinspect presets[/]
    """
    from unetinspect.views.presets import preset_rows

    emit(PresetsView(), fmt, preset_rows(), output)


@command()
@with_options(SOURCE, SIZES, DEVICE, NAMES)
def summary(
    source: SourceArg = None,
    depth: DepthOpt = 1,
    fmt: format_option(SummaryView) = None,
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
    from unetinspect.views.summary import refuse_branches_with_addons, step_depth, summarize

    refuse_branches_with_addons(branches, controlnet, ip_adapter)
    if branches:
        from unetinspect.views.branches import branch_costs

        return emit(BranchesView(names=opts.names), fmt, branch_costs(source, opts.spec(), **opts.loading), output)
    result = summarize(source, opts.spec(), controlnets=tuple(controlnet or ()), impl=impl.value, **opts.device,
                       **opts.loading)
    emit(summary_view(step_depth(depth, controlnet), ip_adapter, result, opts.names), fmt, result, output)


def summary_view(depth: int, ip_adapter: str | None, result: Any, names: str) -> SummaryView:
    """The summary's table, with an IP-Adapter's parameters and image-token FLOPs beside each block if given."""
    if ip_adapter is None:
        return SummaryView(depth, names=names)
    from unetinspect.render.ip_adapter_view import IPAdapterSummaryView
    from unetinspect.views.ip_adapter import ip_adapter_cost

    return IPAdapterSummaryView(depth, ip_adapter_cost(ip_adapter, result), names=names)


Attention = choices("Attention", "auto", "math", "flash", "efficient", "cudnn", "all")


@command()
@with_options(SOURCE, SIZES, DEVICE, TIMING, NAMES)
def profile(
    source: SourceArg = None,
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
    fmt: format_option(ProfileView) = None,
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
    from unetinspect.render.profile_view import ChromeTraceView, SweepView
    from unetinspect.views.profile import profile_by_mode, profile_mode
    from unetinspect.views.summary import step_depth

    mode = profile_mode(sweep=sweep is not None, attention=attention.value, compile=compile_model,
                        chrome_trace=trace is not None, branches=branches, controlnets=tuple(controlnet or ()))
    with progress(fmt, output) as bar:
        result = profile_by_mode(mode, source, opts.spec(), sizes=sweep, depth=step_depth(depth, controlnet),
                                 attention=attention.value, compile=compile_model, chrome_trace=trace is not None,
                                 controlnets=tuple(controlnet or ()), impl=impl.value, progress=bar, **opts.device,
                                 **opts.timing, **opts.loading)
    if trace is not None:
        emit(ChromeTraceView(), None, result, trace)
    view = {"step": ProfileView(names=opts.names), "sweep": SweepView(),
            "branches": BranchesView(names=opts.names)}[mode]
    emit(view, fmt, result, output)


DiagramLevel = choices("DiagramLevel", "blocks", "layers")


@command()
@with_options(SIZES, SOURCE, STYLE, NAMES)
def diagram(
    source: SourceArg = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.")] = Path("unet.svg"),
    fmt: format_option(DiagramView) = None,
    level: Annotated[DiagramLevel, typer.Option("--level", "-l", help="blocks: the U of blocks; layers: each "
                                                "block opened into its resnets, transformers and resamplers.")]
    = DiagramLevel.blocks,
    focus: Annotated[Optional[str], typer.Option("--focus", help="Draw one module opened down to its leaves "
                                                 "instead, e.g. down_blocks.1 or mid_block.attentions.0.")] = None,
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
    from unetinspect.views.graph import diagram_graph

    graph = diagram_graph(source, opts.spec(), level.value, focus, impl=impl.value,
                          controlnets=tuple(controlnet or ()), **opts.loading)
    emit(DiagramView(opts.style(), names=opts.names), fmt, graph, output)


@command(HeadersCommand)
@with_options(SOURCE)
def weights(
    checkpoint: Annotated[str, typer.Argument(
        help="A .safetensors file (original single-file or diffusers), a .ckpt/.pt/.pth/.bin with --allow-pickle, "
             "or a diffusers folder.", metavar="CHECKPOINT", show_default=False)],
    pattern: Annotated[Optional[str], typer.Argument(
        help="List only the tensors whose name (the file's or ours) matches this glob, e.g. 'down_blocks.1.*'.",
        metavar="PATTERN", show_default=False)] = None,
    keys: Annotated[bool, typer.Option("--keys", "-k", help="List the tensors with shapes and dtypes.")] = False,
    fmt: format_option(WeightsView) = None,
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
    from unetinspect.views.weights import inspect_weights

    emit(WeightsView(pattern, listing=keys or pattern is not None), fmt, inspect_weights(checkpoint, **opts.loading),
         output)


@command()
def lora(
    file: Annotated[str, typer.Argument(help="A LoRA .safetensors file (kohya, diffusers/PEFT, LyCORIS LoHa/LoKr).",
                                        metavar="FILE", show_default=False)],
    base: Annotated[Optional[str], typer.Option(
        "--base", help="The UNet to check it against (preset, folder, file). \\[default: the preset it fits best]",
        show_default=False)] = None,
    lbw: Annotated[Optional[str], typer.Option(
        "--lbw", help="Preview a LoRA Block Weight vector (\"1,0,0,…\", 17/26 weights for SD 1.x, 12/20 for SDXL): "
        "which layers it scales and how much of the LoRA's norm is left.", show_default=False)] = None,
    fmt: format_option(LoraView) = None,
    output: OutputOpt = None,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Which blocks a LoRA touches, at what rank, alpha and strength (‖scale·up@down‖), and whether it fits a base.

    Every module is mapped onto our UNet's module paths; the LoRA Block Weight IDs (IN01…OUT11, M00) are shown
    beside the blocks, with the LoRA's norm per ID and the block-weight vector that keeps exactly what it touches.
    With --base, modules that do not fit are listed with the reason (no such module, shape).

    Examples:

      [bold]unetinspect lora my_style.safetensors[/]

      [bold]unetinspect lora sdxl_lora.safetensors --base sd15[/]     why a loader says "lora key not loaded"
    """
    from unetinspect.views.lora import analyze_lora

    emit(LoraView(), fmt, analyze_lora(file, base=base, allow_pickle=allow_pickle, lbw=lbw), output)


@command()
@with_options(SIZES, DEVICE, TIMING, NAMES)
def compare(
    source_a: Annotated[str, typer.Argument(help="First UNet: preset, config.json, diffusers folder or checkpoint.",
                                            metavar="A")],
    source_b: Annotated[Optional[str], typer.Argument(help="Second UNet (omit with --impl diffusers).",
                                                      metavar="[B]", show_default=False)] = None,
    impl: Annotated[Impl, typer.Option("--impl", help="ours: compare A with B. diffusers: compare our model of A "
                                       "with diffusers' own (needs diffusers installed).")] = Impl.ours,
    latency: LatencyOpt = False,
    weights: Annotated[bool, typer.Option("--weights", help="Also compare the weights of two checkpoints of the "
                                          "same structure, block by block: ‖B−A‖/‖A‖, cosine, tensors changed.")]
    = False,
    fmt: format_option(CompareView) = None,
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
    from unetinspect.views.compare import compare as compare_sources

    fmt = CompareView.chosen_format(format_value(fmt), output)
    result = compare_sources(source_a, source_b, opts.spec(), impl=impl.value, profile=latency, weights=weights,
                             page=fmt == "html", allow_pickle=allow_pickle, **opts.device, **opts.timing)
    emit(CompareView(names=opts.names), fmt, result, output)


@command()
@with_options(SIZES, SOURCE, DEVICE, TIMING, TRAINING, NAMES)
def report(
    source: SourceArg = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    latency: LatencyOpt = False,
    train: Annotated[bool, typer.Option("--train", help="Add a training step's memory (as `memory --train`, with "
                                        "the same training options): saved bytes per block as a colour and a "
                                        "column, the totals, where the peak falls.")] = False,
    *,
    opts: Options,
) -> None:
    """One self-contained HTML page: the diagram coloured by a metric you pick, a module tree to sort and open,
    and each block's layers on a click. Opens from disk, offline; attach it to an issue or mail it.

    Examples:

      [bold]unetinspect report sdxl -o sdxl.html[/]

      [bold]unetinspect report sd15 --profile --device cuda -o sd15.html[/]   colour by measured latency too

      [bold]unetinspect report sd15 --train --checkpointing -o train.html[/]   and a training step's memory
    """
    from unetinspect.render.report import ReportView
    from unetinspect.views.report import build_report

    result = build_report(source, opts.spec(), profile=latency, train=train, training=opts.training(),
                          attention=opts.values["attention_kernel"], **opts.device, **opts.timing, **opts.loading)
    emit(ReportView(names=opts.names), "html", result, output)


Aggregate = choices("Aggregate", "mean", "daam")


@command()
@with_options(SIZES, SOURCE, DEVICE, NAMES)
def attention(
    source: SourceArg = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="A .png: the grid of maps (tokens × blocks, plus all layers, with a colour bar). "
        "A .html: the report page with the maps (hover a token). Any other file: the table in --format.",
        show_default=False)] = None,
    prompt: Annotated[Optional[str], typer.Option(
        "--prompt", "-p", help="With a pipeline folder as SOURCE: this prompt, encoded by the folder's own text "
        "encoder(s), rows labelled by its tokenizer(s). Without it the text is random, and every output says so.",
        show_default=False)] = None,
    tokens: Annotated[Optional[str], typer.Option(
        "--tokens", help="Labels for random text's positions, comma-separated (\"a,photo,of,a,cat\"), laid out as "
        "CLIP lays them out: start token, the words, end token, padding.", show_default=False)] = None,
    image: Annotated[Optional[Path], typer.Option(
        "--image", help="Draw the maps over this picture (PNG, JPEG or WebP), e.g. the generated image.",
        show_default=False)] = None,
    self_attention: Annotated[bool, typer.Option(
        "--self", help="Self-attention maps instead: where the --query pixel looks, per block.")] = False,
    query: Annotated[Optional[str], typer.Option(
        "--query", help="The query pixel of --self as Y,X in latent coordinates, e.g. 32,32.",
        show_default=False)] = None,
    blocks: Annotated[Optional[str], typer.Option(
        "--blocks", help="Only the attention layers under these blocks, comma-separated, in any naming: "
        "down_blocks.2,mid_block, input_blocks.4.1 or IN04.", show_default=False)] = None,
    aggregate: Annotated[Aggregate, typer.Option(
        "--aggregate", help="How all layers become one map: mean (bilinear upsampling, mean of the layers' "
        "head-means) or daam (bicubic per head, clamped, heads summed).")] = Aggregate.mean,
    fmt: format_option(AttentionView) = None,
    impl: ImplOpt = Impl.ours,
    *,
    opts: Options,
) -> None:
    """Which pixels each text token steers: every cross-attention layer's softmax(QKᵀ) averaged over heads, in
    one forward pass (random weights for configs; random text unless a pipeline folder encodes --prompt). See
    [bold]unetinspect run[/] for a real prompt's maps over every step of a generation.

    Examples:

      [bold]unetinspect attention ./sd15-pipeline --prompt "a photo of a cat" -o maps.png[/]

      [bold]unetinspect attention sd15 --latent 32 -o maps.png[/]

      [bold]unetinspect attention ./unet --tokens "a,photo,of,a,cat" --image cat.png -o maps.png[/]

      [bold]unetinspect attention sd15 --self --query 16,16 --blocks up_blocks.1,up_blocks.2 -o self.png[/]

      [bold]unetinspect attention tiny --tokens "a,photo,of,a,cat" -o maps.html[/]   hover a token in the report
    """
    from unetinspect.render.attention_view import attention_view
    from unetinspect.views.attention import attention_maps

    fmt = AttentionView.chosen_format(format_value(fmt), output)
    view = attention_view(fmt, aggregate.value, image, names=opts.names)  # a bad picture fails before the run
    result = attention_maps(source, spec=opts.spec(), kind="self" if self_attention else "cross", blocks=blocks or (),
                            heads=aggregate == Aggregate.daam, query=query, tokens=tokens, prompt=prompt, impl=impl.value,
                            page=fmt == "html", **opts.device, **opts.loading)
    emit(view, fmt, result, output)


@command()
@with_options(SOURCE)
def names(
    source: SourceArg = None,
    depth: DepthOpt = 2,
    fmt: format_option(BlockNamesView) = None,
    output: OutputOpt = None,
    *,
    opts: Options,
) -> None:
    """Every block and layer under its three names: diffusers' path, the original LDM path (A1111, ComfyUI, sgm,
    kohya) and the LoRA Block Weight ID (IN04, M00, OUT05), with the UNet's ID list and the IDs a LoRA touches.

    Example: [bold]unetinspect names sdxl --depth 1[/]
    """
    from unetinspect.views.block_names import block_names

    emit(BlockNamesView(), fmt, block_names(source, depth=depth, **opts.loading), output)


@command(name="run")
@with_options(DEVICE)
def run_pipeline_command(
    folder: Annotated[str, typer.Argument(help="A diffusers pipeline folder (what pipe.save_pretrained() wrote), "
                                          "read from local files only.", show_default=False)],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt to generate.", show_default=False)],
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the starting noise (a CPU generator: the same "
                                      "noise on any device).")] = 0,
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale.")] = 7.5,
    height: Annotated[Optional[int], typer.Option("--height", help="Image height in pixels. \\[default: the "
                                                  "pipeline's]", show_default=False)] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Image width in pixels. \\[default: the "
                                                 "pipeline's]", show_default=False)] = None,
    cache: Annotated[Optional[str], typer.Option(
        "--cache", help="Also generate the same seed with DeepCache's uniform schedule, e.g. interval=3,branch=0 "
        "(DeepCache's cache_interval and cache_branch_id), and compare: measured speedup, max difference, PSNR.",
        show_default=False)] = None,
    cache_threshold: Annotated[Optional[float], typer.Option(
        "--cache-threshold", help="Instead, Block Caching's plan from this run's measured drift: a block is "
        "recomputed when its accumulated relative L1 change exceeds this δ ≥ 0.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="run.html: the page (image, block times per step, the prompt's maps over the "
        "image); image.png: the image; run.json, .csv, .md: the results. Without it: the table.",
        show_default=False)] = None,
    fmt: format_option(RunView) = None,
    *,
    opts: Options,
) -> None:
    """Generate one image with a local diffusers pipeline (SD 1.x/2.x, SDXL), its UNet watched: every block's
    time in every step, how much each block's output changes from step to step (drift), and the real prompt's
    attention maps over the image, labelled by its tokenizer; with --cache or --cache-threshold, the same seed
    cached and uncached, compared.
    Needs diffusers and transformers: pip install "unetinspect\\[pipelines]".

    Examples:

      [bold]unetinspect run ./sd15 --prompt "a photo of a cat" --steps 20 -o cat.html[/]

      [bold]unetinspect run ./sdxl --prompt "a lighthouse at dusk" --height 1024 --width 1024 -o lighthouse.png[/]

      [bold]unetinspect run ./sd15 --prompt "a photo of a cat" --cache interval=3,branch=0 -o cached.html[/]
    """
    from unetinspect.views.run import parse_cache, run_pipeline

    RunView.chosen_format(format_value(fmt), output)  # a picture or page without -o fails now, not after the run
    caching = parse_cache(cache, cache_threshold)
    result = run_pipeline(folder, prompt, steps=steps, seed=seed, guidance=guidance, height=height, width=width,
                          cache=caching, **opts.device)
    emit(RunView(), fmt, result, output)


@command()
@with_options(SIZES, SOURCE, DEVICE, TRAINING, NAMES)
def memory(
    source: SourceArg = None,
    train: Annotated[bool, typer.Option("--train", help="A training step: per block the bytes autograd keeps "
                                        "for backward, and weights, gradients, optimizer state and the peak.")]
    = False,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="The totals over sizes: batch=1,2,4, pixel "
                                                 "sizes 512,768 or 512x768, or height=512,768 / width=...; two axes "
                                                 "joined by ';' give every pair.", show_default=False)] = None,
    budget: Annotated[Optional[str], typer.Option("--budget", help="With --sweep, where the peak crosses this "
                                                  "much memory, e.g. 24GiB or 80GB.", show_default=False)] = None,
    depth: DepthOpt = 1,
    fmt: format_option(MemoryView) = None,
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
    from unetinspect.render.memory_view import MemorySweepView
    from unetinspect.views import memory as views

    options = dict(train=train, training=opts.training(), attention=opts.values["attention_kernel"], **opts.device,
                   **opts.loading)
    if views.sweeping(sweep, budget):
        result = views.memory_sweep(source, sweep, spec=opts.spec(), budget=budget, **options)
        return emit(MemorySweepView(), fmt, result, output)
    emit(MemoryView(depth, names=opts.names), fmt, views.memory(source, opts.spec(), **options), output)


@command()
@with_options(SOURCE, SIZES, NAMES)
def precision(
    source: SourceArg = None,
    dtypes: Annotated[str, typer.Option("--dtypes", help="The formats to put each block in, alone: fp16, bf16 "
                                        "(real kernels), fp8 (e4m3), int8 (fake-quantised).")] = "fp16,bf16,fp8,int8",
    depth: Annotated[int, typer.Option("--depth", "-d", min=1, help="Test every module at this depth: 1 = the "
                                       "blocks, 2 = their layers.")] = 1,
    blocks: Annotated[Optional[str], typer.Option("--blocks", help="Test only these modules, comma-separated, in "
                                                  "any naming: mid_block,up_blocks.1, input_blocks.4.1 or IN04.",
                                                  show_default=False)] = None,
    timesteps: Annotated[str, typer.Option("--timesteps", help="The timesteps to compare at (sensitivity moves "
                                           "along the loop).")] = "999,500,50",
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cpu, cuda or cuda:N (the reference runs in float32 there). \\[default: cuda if "
        "available, else cpu]", show_default=False)] = None,
    max_seconds: Annotated[float, typer.Option(
        "--max-seconds", min=0, help="Refuse, before the runs, work estimated (timesteps × (1 + blocks × dtypes) "
        "forwards, from their FLOPs and one batch-1 run) to take longer than this.")] = 600.0,
    fmt: format_option(PrecisionView) = None,
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
    from unetinspect.views.precision import precision as block_precision

    with progress(fmt, output) as bar:
        result = block_precision(source, opts.spec(), dtypes=dtypes, depth=depth, blocks=blocks, timesteps=timesteps,
                                 device=device, max_seconds=max_seconds, progress=bar, **opts.loading)
    emit(PrecisionView(names=opts.names), fmt, result, output)


@command()
@with_options(SOURCE, SIZES, DEVICE, NAMES)
def ranges(
    source: SourceArg = None,
    depth: Annotated[int, typer.Option("--depth", "-d", min=1, help="Watch every module down to this depth: 1 = "
                                       "the blocks, 2 = also their layers.")] = 1,
    blocks: Annotated[Optional[str], typer.Option("--blocks", help="Show only these modules, comma-separated, in "
                                                  "any naming: mid_block,up_blocks.1, input_blocks.4.1 or IN04.",
                                                  show_default=False)] = None,
    timesteps: Annotated[str, typer.Option("--timesteps", help="The timesteps to run at, in 0..999 (ranges grow "
                                           "at high noise).")] = "999,500,1",
    max_seconds: Annotated[float, typer.Option(
        "--max-seconds", min=0, help="Refuse, before the runs, work estimated (two forwards per timestep: "
        "recording every operation about doubles a step; from their FLOPs and one batch-1 run) to take longer "
        "than this.")] = 600.0,
    fmt: format_option(RangesView) = None,
    output: OutputOpt = None,
    *,
    opts: Options,
) -> None:
    """How large the numbers inside each block get: per block the largest |x| any operation inside it makes (at
    every depth, not only its output), its headroom under fp16, bf16 and fp8 e4m3, its largest attention logit
    and its non-finite values, over a few timesteps.

    Blocks holding non-finite values come first, then the largest |x|; headroom below 1× overflows. Runs in
    float32 by default, so a block past 65504 shows by how much; --dtype fp16 makes the overflows real and
    locates the first one. Use the model's real weights: random ones show the architecture only.

    Examples:

      [bold]unetinspect ranges ./my-model/unet --device cuda[/]

      [bold]unetinspect ranges sd21 --depth 2 --blocks mid_block --timesteps 999 --dtype fp16[/]
    """
    from unetinspect.views.ranges import activation_ranges

    with progress(fmt, output) as bar:
        result = activation_ranges(source, opts.spec(), depth=depth, blocks=blocks, timesteps=timesteps,
                                   max_seconds=max_seconds, progress=bar, **opts.device, **opts.loading)
    emit(RangesView(names=opts.names), fmt, result, output)


def main() -> None:
    """Run the command line (the console script and `python -m unetinspect` start in `__main__.main`, which holds
    Ctrl-C through start-up: see cli_signals). Here, not in cli_runtime: `app` has its commands only once this
    module has declared them."""
    app()
