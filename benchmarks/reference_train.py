"""The baseline of the training benchmark: a notebook-style PyTorch training loop, as a typical course-project
``train_model.py`` writes it. Deliberately plain in its engineering: torchvision ``ImageFolder`` decodes every image
with PIL and runs the transforms per sample, every epoch; one DataLoader worker; fp32; torch's default threads,
memory format and optimizer implementation; the GPU when there is one, nothing more.

The recipe is train.py's, so that only the engineering differs and equal accuracy is a fair expectation: same
architecture, image size, epochs, batch size, learning rate, Adam with weight decay, label smoothing 0.1, half an
epoch of linear warmup then cosine decay, random resized crops of 60-100% of the area and a 0.2 colour jitter.

The transfer-learning recipes (resnets): ``--weights FILE`` loads a backbone state dict (the ``fc`` head stays new),
``--freeze-backbone`` trains the head alone (the frozen BatchNorm layers in eval mode, as train.py runs them), and
``--no-augment`` resizes training images as validation ones. The notebook way of doing it: every epoch still decodes
every image and runs it through the whole network.

Prints the same ``epoch=...`` line as train.py (so one parser reads both) and a final ``reference_done`` line.
Run: ``python benchmarks/reference_train.py --train DIR --validation DIR --epochs 4 --batch-size 64 --lr 0.0025``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torchvision
from torch import nn
from torchvision import transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def loaders(args: argparse.Namespace) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    size = args.image_size
    eval_tf = transforms.Compose([
        transforms.Resize((size, size)), transforms.ToTensor(), transforms.Normalize(MEAN, STD),
    ])
    train_tf = eval_tf if args.no_augment else transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.6, 1.0)),
        transforms.ColorJitter(0.2, 0.2, 0.2),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    train = torchvision.datasets.ImageFolder(args.train, transform=train_tf)
    validation = torchvision.datasets.ImageFolder(args.validation, transform=eval_tf)
    return (
        torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, num_workers=1, drop_last=True),
        torch.utils.data.DataLoader(validation, batch_size=args.batch_size, shuffle=False, num_workers=1),
    )


def warmup_cosine(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def run_epoch(model: nn.Module, loader, criterion, device, optimizer=None, scheduler=None,
              frozen: bool = False) -> tuple[float, float]:
    training = optimizer is not None
    model.train(training)
    if training and frozen:
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            loss = criterion(outputs, labels)
            if training:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
            loss_sum += loss.item() * len(labels)
            correct += (outputs.argmax(1) == labels).sum().item()
            seen += len(labels)
    return loss_sum / max(1, seen), correct / max(1, seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.0025)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--weights", help="a backbone state dict to start from (its fc head is not loaded)")
    parser.add_argument("--freeze-backbone", action="store_true", help="train the fc head alone")
    parser.add_argument("--no-augment", action="store_true", help="no random crops or colour jitter")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_loader, val_loader = loaders(args)
    model = torchvision.models.get_model(args.arch, weights=None, num_classes=len(train_loader.dataset.classes))
    if args.weights:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
    if args.freeze_backbone:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("fc.")
    model = model.to(device)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=args.lr, weight_decay=args.weight_decay)
    steps = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(args.epochs * steps, max(1, steps // 2)))
    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = run_epoch(model, train_loader, criterion, device, optimizer, scheduler,
                                          frozen=args.freeze_backbone)
        val_loss, val_acc = run_epoch(model, val_loader, criterion, device)
        print(f"epoch={epoch}/{args.epochs} train_loss={train_loss:.4f} train_accuracy={train_acc:.4f} "
              f"validation_loss={val_loss:.4f} validation_accuracy={val_acc:.4f} lr={lr:.6g} "
              f"epoch_seconds={time.perf_counter() - started:.1f}", flush=True)
    print(f"reference_done train_images={len(train_loader.dataset)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
