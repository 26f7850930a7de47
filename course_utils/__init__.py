"""Helpers for the Fully Convolutional Learning course.

Module map (one line per module; a concept lives in one obvious place)::

    The lesson's ops (one notebook each)
      upsampling         zero insertion + kernels, nearest/bilinear/bicubic (01)
      pooling            max pooling with switches, max / bed-of-nails / nearest unpooling (02)
      conv_matrix        a convolution as the matrix C, its transpose, output sizes, overlaps (03)
      receptive_field    receptive-field arithmetic, effective receptive fields, gridding (04)
    Data
      labels             IGNORE_INDEX (the one void label), label-array coercion and range checks
      datasets/          synthcity (classes, generate, the Dataset), render (the scene renderer),
                         transforms (joint augmentation), folders (VOC / Cityscapes layouts)
      images             sample photographs shipped with matplotlib
    Models and losses
      models/            build_model by name; backbone (encoder, the output contract and each
                         model's criterion, upsample_aligned, replicate_pad, exact adaptive
                         pooling), fcn, pspnet, deeplab, gscnn
      losses             cross-entropy, edge labels, balanced BCE, Gated-SCNN's dual-task loss
    Training and evaluation
      precision          THE mixed-precision policy (bf16 only where native; fp16 + scaler)
      device             device choice and the environment report
      threads            how OpenMP threads wait between operations (set before torch loads)
      training/          loop (fit, train_step, the Trainer and its resumable state),
                         config (TrainConfig, History), schedule (PolyLR), optimizer,
                         callbacks (StopAt), evaluation (THE evaluate/predict, BoundaryMeter),
                         batches (loaders, ShardSampler), checkpoints, rng (random states),
                         prepare (channels_last, DDP, compile order), distributed, progress
      metrics/           confusion (IoU once), boundaries (boundary F), crops (crop factor,
                         in place and zoomed), significance (paired bootstrap, earned bold),
                         instances (components, boxes, matching)
      pretrain, zoo      the course-trained encoder and the four-model zoo (load, verify, retrain)
    Notebooks and teaching
      notebook           setup(): seeds and plot style (first cell of every notebook)
      plotting           matrices with numbers, image grids, label colours, class legends, source
      selfcheck/         check("01.Q1", answer); expected answers per notebook in nbNN.py
      widgets/           the instructor demos over one base (base.Demo)
    Plumbing
      _checks, atomic, paths    argument checks, atomic file writes, where data/ is
    Command line (never imported by the library)
      cli/               train, evaluate, zoo, pretrain, common (data specs), distributed
                         (torchrun); `python -m course_utils.train` / `evaluate` are shims onto it
"""
__version__ = "0.1.0"
