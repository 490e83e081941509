"""The config classes of every family (`UNetConfig`, `SVDConfig`, `MotionConfig`, `ControlNetConfig`), their fields,
defaults and rules (`values`), and the block-type catalogue (`block_types`).

The ground floor: every other room reads these, and they read only `errors` and `files`. They stand below the
family records (`unetinspect.families`), which name them beside model classes; kept inside `families/` they would
make the arrows run back up. Import the module you need (`unetinspect.configs.unet`); this package re-exports
nothing, so that reading one config does not load the others.
"""
