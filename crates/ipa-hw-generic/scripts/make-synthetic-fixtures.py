#!/usr/bin/env python3
"""Write the synthetic fixture trees (server, multipath, infiniband) under tests/fixtures/.
They follow real sysfs layout (relative symlinks into /sys/devices) with values modelled on
real machines; re-run after changing them. Usage: make-synthetic-fixtures.py <fixtures-dir>"""
import json, os, shutil, struct, sys

OUT = sys.argv[1]

def w(root, path, text):
    p = os.path.join(root, path.lstrip('/'))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    mode = 'wb' if isinstance(text, bytes) else 'w'
    with open(p, mode) as f:
        f.write(text if isinstance(text, bytes) else text + '\n')

def ln(root, path, target):
    p = os.path.join(root, path.lstrip('/'))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.symlink(target, p)

def common(root, host, cpus=4, sockets=1, mhz=None, mem_kb=16384000, efi=True, bootif=None):
    flags = "fpu vme de pse tsc msr pae mce cx8 apic sep sse sse2 avx2 avx512f"
    blocks = []
    for c in range(cpus):
        pkg = c * sockets // cpus
        blocks.append(f"processor\t: {c}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nphysical id\t: {pkg}\ncpu MHz\t\t: 2000.000\nflags\t\t: {flags}\n")
        w(root, f"/sys/devices/system/cpu/cpu{c}/topology/physical_package_id", str(pkg))
        w(root, f"/sys/devices/system/cpu/cpu{c}/topology/core_id", str(c % (cpus // sockets)))
        if mhz:
            w(root, f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq", str(mhz * 1000))
    w(root, "/proc/cpuinfo", "\n".join(blocks))
    w(root, "/sys/devices/system/cpu/present", f"0-{cpus-1}")
    w(root, "/proc/meminfo", f"MemTotal:       {mem_kb} kB\nMemFree:        1000 kB")
    w(root, "/proc/sys/kernel/hostname", host)
    cmd = "BOOT_IMAGE=/vmlinuz ro ipa-api-url=http://10.0.0.1:6385"
    if bootif:
        cmd += f" BOOTIF={bootif}"
    w(root, "/proc/cmdline", cmd)
    if efi:
        os.makedirs(os.path.join(root, "sys/firmware/efi"), exist_ok=True)
    for n in range(sockets):
        per = cpus // sockets
        w(root, f"/sys/devices/system/node/node{n}/cpulist", f"{n*per}-{n*per+per-1}")
        w(root, f"/sys/devices/system/node/node{n}/meminfo", f"Node {n} MemTotal:       {mem_kb // sockets} kB")

def dmi(root, vendor, product, sku, serial, bios_vendor, bios_ver, bios_date, dimms_mb):
    for k, v in dict(sys_vendor=vendor, product_name=product, product_sku=sku, product_serial=serial,
                     bios_vendor=bios_vendor, bios_version=bios_ver, bios_date=bios_date).items():
        w(root, f"/sys/class/dmi/id/{k}", v)
    table = b""
    for i, mb in enumerate(dimms_mb):
        body = bytearray(0x28)
        body[0], body[1] = 17, 0x28
        struct.pack_into("<H", body, 2, 0x1100 + i)
        if mb >= 0x7FFF:
            struct.pack_into("<H", body, 0x0C, 0x7FFF); struct.pack_into("<I", body, 0x1C, mb)
        else:
            struct.pack_into("<H", body, 0x0C, mb)
        table += bytes(body) + b"DIMM\x00\x00"
    empty = bytearray(0x28); empty[0], empty[1] = 17, 0x28; struct.pack_into("<H", empty, 0x0C, 0)
    table += bytes(empty) + b"\x00\x00" + bytes([127, 4, 0xff, 0xff]) + b"\x00\x00"
    w(root, "/sys/firmware/dmi/tables/DMI", table)

def nic(root, name, pci, vendor, device, driver, mac, perm=None, speed=None, carrier=1, addrs=None, extras=None):
    dev = f"/sys/devices/pci0000:00/0000:00:01.0/{pci}"
    ln(root, f"/sys/class/net/{name}", f"../../devices/pci0000:00/0000:00:01.0/{pci}/net/{name}")
    w(root, f"{dev}/net/{name}/address", mac)
    w(root, f"{dev}/net/{name}/carrier", str(carrier))
    if speed is not None:
        w(root, f"{dev}/net/{name}/speed", str(speed))
    ln(root, f"{dev}/net/{name}/device", f"../../../{pci}")
    w(root, f"{dev}/vendor", vendor); w(root, f"{dev}/device", device); w(root, f"{dev}/numa_node", "0")
    w(root, f"{dev}/class", "0x020000"); w(root, f"{dev}/revision", "0x02")
    ln(root, f"{dev}/driver", f"../../../../bus/pci/drivers/{driver}")
    ln(root, f"/sys/bus/pci/devices/{pci}", f"../../../devices/pci0000:00/0000:00:01.0/{pci}")
    if extras is not None:
        extras["permanent_macs"][name] = perm or mac
        extras["addresses"][name] = addrs or {"ipv4": None, "ipv6": None}

def virtual_nic(root, name, mac):
    ln(root, f"/sys/class/net/{name}", f"../../devices/virtual/net/{name}")
    w(root, f"/sys/devices/virtual/net/{name}/address", mac)
    w(root, f"/sys/devices/virtual/net/{name}/carrier", "1")

def disk(root, kname, devno, sectors, syspath, rota=0, lsec=512, psec=512, model=None, vendor=None,
         hctl=None, udev=None, links=(), serial_file=None, wwid=None, parts=(), holders=(), extra=None):
    base = f"/sys/devices/{syspath}/block/{kname}"
    ln(root, f"/sys/block/{kname}", f"../devices/{syspath}/block/{kname}")
    w(root, f"{base}/dev", devno); w(root, f"{base}/size", str(sectors))
    w(root, f"{base}/queue/rotational", str(rota))
    w(root, f"{base}/queue/logical_block_size", str(lsec)); w(root, f"{base}/queue/physical_block_size", str(psec))
    os.makedirs(os.path.join(root, f"{base.lstrip('/')}/holders"), exist_ok=True)
    for h in holders:
        ln(root, f"{base}/holders/{h}", f"../../{h}")
    if model or vendor or hctl or serial_file or wwid:

        ln(root, f"{base}/device", "../..")
        dev = f"/sys/devices/{syspath}"
        if model: w(root, f"{dev}/model", model)
        if vendor: w(root, f"{dev}/vendor", vendor)
        if serial_file: w(root, f"{dev}/serial", serial_file)
        if wwid: w(root, f"{dev}/wwid", wwid)
        if hctl: os.makedirs(os.path.join(root, f"sys/devices/{syspath}/scsi_device/{hctl}"), exist_ok=True)
    for (pk, pdev, psz) in parts:
        w(root, f"{base}/{pk}/dev", pdev); w(root, f"{base}/{pk}/size", str(psz)); w(root, f"{base}/{pk}/partition", pk[-1])
    lines = [f"E:{k}={v}" for k, v in (udev or {}).items()] + [f"S:{l}" for l in links]
    if lines:
        w(root, f"/run/udev/data/b{devno}", "\n".join(lines))
    for l in links:
        if l.startswith("disk/by-path/"):
            ln(root, f"/dev/{l}", f"../../{kname}")
    for k, v in (extra or {}).items():
        w(root, f"{base}/{k}", v)

def fresh(name):
    root = os.path.join(OUT, name)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    return root, {"architecture": "x86_64", "permanent_macs": {}, "addresses": {}}

def done(root, extras):
    with open(os.path.join(root, "ipa-fixture.json"), "w") as f:
        json.dump(extras, f, indent=2); f.write("\n")

# --- server: 2x i40e + 1 ixgbe, bond, vlan, NVMe + 2 SAS + BMC ------------------------------
root, ex = fresh("server")
common(root, "compute-17.example.org", cpus=8, sockets=2, mhz=3200, mem_kb=527812500, bootif="01-3c-fd-fe-aa-bb-01")
dmi(root, "Dell Inc.", "PowerEdge R650", "SKU=0A5C;ModelName=PowerEdge R650", "ABC1234", "Dell Inc.", "1.10.2", "03/22/2023", [262144, 262144])
nic(root, "eno1", "0000:18:00.0", "0x8086", "0x1572", "i40e", "3c:fd:fe:aa:bb:01", speed=10000, addrs={"ipv4": "10.0.0.5", "ipv6": "fe80::3efd:feff:feaa:bb01%eno1"}, extras=ex)
nic(root, "eno2", "0000:18:00.1", "0x8086", "0x1572", "i40e", "3c:fd:fe:aa:bb:02", speed=-1, carrier=0, extras=ex)
nic(root, "ens3f0", "0000:3b:00.0", "0x8086", "0x10fb", "ixgbe", "fa:16:3e:00:00:09", extras=ex)  # fa: dropped
nic(root, "ens3f1", "0000:3b:00.1", "0x8086", "0x10fb", "ixgbe", "90:e2:ba:00:00:0a", perm="90:e2:ba:00:00:0b", speed=10000, extras=ex)
virtual_nic(root, "lo", "00:00:00:00:00:00")
virtual_nic(root, "docker0", "02:42:ac:11:00:01")
ln(root, "/sys/class/net/bond0", "../../devices/virtual/net/bond0")
w(root, "/sys/devices/virtual/net/bond0/address", "3c:fd:fe:aa:bb:01"); w(root, "/sys/devices/virtual/net/bond0/carrier", "1")
os.makedirs(os.path.join(root, "sys/devices/virtual/net/bond0/bonding"))
ex["permanent_macs"]["bond0"] = "00:00:00:00:00:00"
ln(root, "/sys/class/net/bond0.100", "../../devices/virtual/net/bond0.100")
w(root, "/sys/devices/virtual/net/bond0.100/address", "3c:fd:fe:aa:bb:01"); w(root, "/sys/devices/virtual/net/bond0.100/carrier", "1")
ex["addresses"]["bond0.100"] = {"ipv4": "192.168.100.7", "ipv6": None}
disk(root, "sda", "8:0", 936640512, "pci0000:64/0000:64:02.0/0000:65:00.0/host0/target0:3:111/0:3:111:0",
     model="PERC H755 Front", vendor="DELL", hctl="0:3:111:0",
     udev={"ID_SCSI_SERIAL": "006b3a1c8006e0ee4f", "ID_WWN": "0x6f4ee0806b3a1c00", "ID_WWN_WITH_EXTENSION": "0x6f4ee0806b3a1c002a1b2c3d4e5f6071", "ID_WWN_VENDOR_EXTENSION": "0x2a1b2c3d4e5f6071", "ID_SERIAL": "36f4ee0806b3a1c002a1b2c3d4e5f6071", "ID_SERIAL_SHORT": "6f4ee0806b3a1c002a1b2c3d4e5f6071"},
     links=["disk/by-path/pci-0000:65:00.0-scsi-0:3:111:0", "disk/by-id/wwn-0x6f4ee0806b3a1c002a1b2c3d4e5f6071"],
     parts=[("sda1", "8:1", 1048576), ("sda2", "8:2", 935000000)])
disk(root, "sdb", "8:16", 7814037168, "pci0000:64/0000:64:02.0/0000:65:00.0/host0/port-0:0/end_device-0:0/target0:0:1/0:0:1:0",
     rota=1, psec=4096, model="ST4000NM0035-1V4", vendor="SEAGATE", hctl="0:0:1:0",
     udev={"ID_SERIAL_SHORT": "ZC1ABCDE", "ID_SERIAL": "ST4000NM0035-1V4_ZC1ABCDE", "ID_WWN": "0x5000c500a1b2c3d4", "ID_WWN_WITH_EXTENSION": "0x5000c500a1b2c3d4"},
     links=["disk/by-path/pci-0000:65:00.0-sas-exp0x500056b3a1b2c3ff-phy1-lun-0"])
disk(root, "nvme0n1", "259:0", 3125627568, "pci0000:c0/0000:c0:01.1/0000:c3:00.0/nvme/nvme0",
     model="Dell Ent NVMe P5600 MU U.2 1.6TB", serial_file="PHAB123400AB1P6CGN", wwid="eui.01000000000000005cd2e4d1a2b34c51",
     udev={"ID_MODEL_ENC": "Dell\\x20Ent\\x20NVMe\\x20P5600\\x20MU\\x20U.2\\x201.6TB\\x20\\x20\\x20", "ID_SERIAL_SHORT": "PHAB123400AB1P6CGN", "ID_SERIAL": "Dell_Ent_NVMe_P5600_MU_U.2_1.6TB_PHAB123400AB1P6CGN", "ID_WWN": "eui.01000000000000005cd2e4d1a2b34c51"},
     links=["disk/by-path/pci-0000:c3:00.0-nvme-1"])
disk(root, "sr0", "11:0", 2097151, "pci0000:00/0000:00:17.0/ata5/host4/target4:0:0/4:0:0:0", model="DVD-ROM", hctl="4:0:0:0", extra={"device/type": "5"})
disk(root, "fd0", "2:0", 8, "platform/floppy.0")
disk(root, "ram0", "1:0", 131072, "virtual")
disk(root, "zram0", "252:0", 8388608, "virtual")
disk(root, "loop0", "7:0", 0, "virtual")
disk(root, "sdc", "8:32", 0, "pci0000:00/0000:00:14.0/usb1/1-4/1-4:1.0/host5/target5:0:0/5:0:0:0", model="Virtual Floppy", vendor="iDRAC", hctl="5:0:0:0")
os.makedirs(os.path.join(root, "sys/class/sas_host/host0"), exist_ok=True)
w(root, "/dev/ipmi0", "")
w(root, "/sys/bus/usb/devices/1-4/busnum", "1"); w(root, "/sys/bus/usb/devices/1-4/devnum", "3")
w(root, "/sys/bus/usb/devices/1-4/product", "Virtual Keyboard"); w(root, "/sys/bus/usb/devices/1-4/manufacturer", "Avocent")
done(root, ex)

# --- multipath: two paths of one LUN + dm-0 mpath, one local disk, md RAID1 ------------------
root, ex = fresh("multipath")
common(root, "storage-03", cpus=4, sockets=1, mhz=2600, mem_kb=65536000, efi=False)
dmi(root, "HPE", "ProLiant DL380 Gen10", "868703-B21", "CZJ1234567", "HPE", "U30", "05/21/2021", [32768, 32768])
nic(root, "ens1f0", "0000:5d:00.0", "0x15b3", "0x1015", "mlx5_core", "b8:59:9f:00:00:01", speed=25000, addrs={"ipv4": "172.16.0.9", "ipv6": None}, extras=ex)
for k, devno, h in (("sda", "8:0", "1:0:0:1"), ("sdb", "8:16", "2:0:0:1")):
    disk(root, k, devno, 2147483648, f"pci0000:5d/0000:5d:02.0/0000:5e:00.0/host{h[0]}/rport-{h[0]}:0-0/target{h[0]}:0:0/{h}",
         model="MSA 2050 SAN", vendor="HPE", hctl=h, holders=["dm-0"],
         udev={"ID_SCSI_SERIAL": "00c0ff3b8a5e0000", "ID_WWN": "0x600c0ff0003b8a5e", "ID_WWN_WITH_EXTENSION": "0x600c0ff0003b8a5e9d2b7a6001000000"},
         links=[f"disk/by-path/pci-0000:5e:00.0-fc-0x207000c0ff3b8a5e-lun-1" + ("" if k == "sda" else "-b")])
disk(root, "dm-0", "253:0", 2147483648, "virtual", extra={"dm/uuid": "mpath-3600c0ff0003b8a5e9d2b7a6001000000", "dm/name": "mpatha"},
     udev={"DM_NAME": "mpatha", "DM_UUID": "mpath-3600c0ff0003b8a5e9d2b7a6001000000", "DM_WWN": "0x600c0ff0003b8a5e", "DM_SERIAL": "3600c0ff0003b8a5e9d2b7a6001000000"})
disk(root, "sdc", "8:32", 468862128, "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0", model="MZ7LH240HAHQ-00005", vendor="ATA", hctl="0:0:0:0", holders=["md127"],
     udev={"ID_SERIAL_SHORT": "S45RNA0M123456", "ID_WWN": "0x5002538e00000001"})
disk(root, "sdd", "8:48", 468862128, "pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0", model="MZ7LH240HAHQ-00005", vendor="ATA", hctl="1:0:0:0", holders=["md127"],
     udev={"ID_SERIAL_SHORT": "S45RNA0M654321", "ID_WWN": "0x5002538e00000002"})
disk(root, "md127", "9:127", 468598784, "virtual", rota=0, extra={"md/level": "raid1"}, udev={"MD_DEVNAME": "root", "MD_LEVEL": "raid1"})
done(root, ex)

# --- infiniband: ConnectX IB port (20-byte address) + ethernet, one SATA SSD -------------------
root, ex = fresh("infiniband")
common(root, "hpc-node-042", cpus=4, sockets=1, mem_kb=263000000, efi=True, bootif="01-b8-59-9f-11-22-33")
dmi(root, "Supermicro", "SYS-1029U-TRT", "", "S123456X", "American Megatrends Inc.", "3.4", "11/04/2020", [65536, 65536, 65536, 65536])
nic(root, "ib0", "0000:af:00.0", "0x15b3", "0x1017", "mlx5_core", "a0:00:02:20:fe:80:00:00:00:00:00:00:b8:59:9f:03:00:11:22:33", speed=100000, addrs={"ipv4": "10.10.0.42", "ipv6": None}, extras=ex)
nic(root, "eno1", "0000:3d:00.0", "0x8086", "0x37d2", "i40e", "ac:1f:6b:11:22:33", speed=1000, addrs={"ipv4": "10.0.5.42", "ipv6": None}, extras=ex)
disk(root, "sda", "8:0", 937703088, "pci0000:00/0000:00:11.5/ata1/host0/target0:0:0/0:0:0:0", model="SAMSUNG MZ7KH480", vendor="ATA", hctl="0:0:0:0",
     udev={"ID_SERIAL_SHORT": "S47MNA0N100200", "ID_WWN": "0x5002538e40a1b2c3"}, links=["disk/by-path/pci-0000:00:11.5-ata-1"])
done(root, ex)
print("fixtures written")


# git does not keep empty directories, and several carry meaning in sysfs (firmware/efi,
# scsi_device/<hctl>, holders): keep each with a `.keep` file, which the reader ignores.
for top in sys.argv[1:] or ["."]:
    for dirpath, dirnames, filenames in os.walk(top):
        if not dirnames and not filenames:
            open(os.path.join(dirpath, ".keep"), "w").close()
