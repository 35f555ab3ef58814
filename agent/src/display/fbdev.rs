//! `--display fb:PATH`: a Linux framebuffer device, its geometry and pixel format read from
//! the driver, or a file laid out like one with the geometry given after `?`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileTypeExt;

use caidan_screens::fb::{Channel, FbError, Framebuffer, Geometry, PixelFormat};

/// Where the agent draws its own screens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayTarget {
    pub path: String,
    /// Geometry declared for a file-backed framebuffer; a device reports its own.
    pub declared: Option<Geometry>,
}

/// Why a `--display` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--display {given:?}: {reason} (expected fb:/dev/fbN, or fb:FILE?size=WxH&format=rgb565|xrgb8888|bgr888|mono[&line_length=BYTES])"
)]
pub struct BadDisplay {
    given: String,
    reason: String,
}

impl std::str::FromStr for DisplayTarget {
    type Err = BadDisplay;

    fn from_str(given: &str) -> Result<Self, BadDisplay> {
        let bad = |reason: &str| BadDisplay {
            given: given.into(),
            reason: reason.into(),
        };
        let rest = given
            .strip_prefix("fb:")
            .ok_or_else(|| bad("only framebuffers (fb:) are supported"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(bad("no path"));
        }
        if query.is_empty() {
            return Ok(DisplayTarget {
                path: path.into(),
                declared: None,
            });
        }
        let (mut size, mut format, mut line_length) = (None, None, None);
        for pair in query.split('&') {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(&format!("{pair:?} is not key=value")))?;
            match k {
                "size" => {
                    let (w, h) = v
                        .split_once('x')
                        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                        .ok_or_else(|| bad(&format!("size {v:?} is not WIDTHxHEIGHT")))?;
                    size = Some((w, h));
                }
                "format" => {
                    format = Some(
                        PixelFormat::named(v)
                            .ok_or_else(|| bad(&format!("unknown pixel format {v:?}")))?,
                    )
                }
                "line_length" => {
                    line_length = Some(
                        v.parse::<u32>()
                            .map_err(|_| bad(&format!("line_length {v:?} is not a number")))?,
                    )
                }
                _ => return Err(bad(&format!("unknown key {k:?}"))),
            }
        }
        let (Some((width, height)), Some(format)) = (size, format) else {
            return Err(bad("a file-backed framebuffer needs both size and format"));
        };
        let row = (u64::from(width) * u64::from(format.bits_per_pixel())).div_ceil(8) as u32;
        let geometry = Geometry {
            width,
            height,
            line_length: line_length.unwrap_or(row),
            format,
            first_byte: 0,
        };
        geometry.validate(path).map_err(|e| bad(&e.to_string()))?;
        Ok(DisplayTarget {
            path: path.into(),
            declared: Some(geometry),
        })
    }
}

impl DisplayTarget {
    /// Opens the framebuffer for writing, with the geometry its driver reports (a device)
    /// or the one declared (a file).
    pub fn open(&self) -> Result<Framebuffer, FbError> {
        let io = |source| FbError::Io {
            path: self.path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io)?;
        let is_device = file.metadata().map_err(io)?.file_type().is_char_device();
        let geometry = match (is_device, self.declared) {
            (true, _) => query(&file, &self.path)?,
            (false, Some(g)) => g,
            (false, None) => {
                return Err(FbError::Unsupported {
                    path: self.path.clone(),
                    reason: "not a framebuffer device; a file needs ?size=WxH&format=...".into(),
                });
            }
        };
        Framebuffer::new(file, &self.path, geometry)
    }
}

// linux/fb.h: the ioctls and the parts of their structures read here.
const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;
const FB_VISUAL_MONO01: u32 = 0;
const FB_VISUAL_MONO10: u32 = 1;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Bitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

#[repr(C)]
#[derive(Default)]
struct VarScreenInfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: Bitfield,
    green: Bitfield,
    blue: Bitfield,
    transp: Bitfield,
    rest: [u32; 20],
}

#[repr(C)]
#[derive(Default)]
struct FixScreenInfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    kind: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

/// The geometry and pixel format the framebuffer driver reports.
#[allow(unsafe_code)] // the two read-only framebuffer ioctls
fn query(file: &File, path: &str) -> Result<Geometry, FbError> {
    use std::os::fd::AsRawFd;
    let (mut var, mut fix) = (VarScreenInfo::default(), FixScreenInfo::default());
    let fd = file.as_raw_fd();
    // SAFETY: both ioctls only write into the structure passed, which is laid out as
    // linux/fb.h declares it and lives for the call.
    let ok = unsafe {
        libc::ioctl(fd, FBIOGET_VSCREENINFO as _, &mut var as *mut VarScreenInfo) == 0
            && libc::ioctl(fd, FBIOGET_FSCREENINFO as _, &mut fix as *mut FixScreenInfo) == 0
    };
    if !ok {
        return Err(FbError::Io {
            path: path.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    let channel = |b: Bitfield| Channel {
        offset: b.offset,
        length: b.length,
    };
    let format = match (var.bits_per_pixel, fix.visual) {
        (1, FB_VISUAL_MONO01) => PixelFormat::Mono { ink_set: true },
        (1, FB_VISUAL_MONO10) => PixelFormat::Mono { ink_set: false },
        (bits_per_pixel, _) => PixelFormat::Packed {
            bits_per_pixel,
            red: channel(var.red),
            green: channel(var.green),
            blue: channel(var.blue),
        },
    };
    let geometry = Geometry {
        width: var.xres,
        height: var.yres,
        line_length: fix.line_length,
        format,
        first_byte: u64::from(var.yoffset) * u64::from(fix.line_length)
            + u64::from(var.xoffset) * u64::from(var.bits_per_pixel) / 8,
    };
    geometry.validate(path)?;
    Ok(geometry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_structures_have_the_kernel_sizes() {
        assert_eq!(std::mem::size_of::<VarScreenInfo>(), 160);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<FixScreenInfo>(), 80);
    }

    #[test]
    fn a_file_backed_framebuffer_declares_its_geometry() {
        let t: DisplayTarget = "fb:/tmp/fb?size=480x272&format=rgb565&line_length=1024"
            .parse()
            .unwrap();
        assert_eq!(
            t.declared,
            Some(Geometry {
                width: 480,
                height: 272,
                line_length: 1024,
                format: PixelFormat::RGB565,
                first_byte: 0
            })
        );
        let d: DisplayTarget = "fb:/dev/fb0".parse().unwrap();
        assert_eq!(d.declared, None);
        let mono: DisplayTarget = "fb:/tmp/m?size=480x800&format=mono".parse().unwrap();
        assert_eq!(mono.declared.unwrap().line_length, 60);
    }

    #[test]
    fn a_bad_display_says_what_is_wrong() {
        for (given, says) in [
            ("/dev/fb0", "only framebuffers (fb:)"),
            ("fb:", "no path"),
            (
                "fb:/tmp/f?size=480&format=rgb565",
                "size \"480\" is not WIDTHxHEIGHT",
            ),
            (
                "fb:/tmp/f?size=480x272&format=yuv",
                "unknown pixel format \"yuv\"",
            ),
            ("fb:/tmp/f?size=480x272", "needs both size and format"),
            (
                "fb:/tmp/f?size=480x272&format=rgb565&line_length=10",
                "line length 10 bytes",
            ),
            ("fb:/tmp/f?depth=3", "unknown key \"depth\""),
        ] {
            let e = given.parse::<DisplayTarget>().unwrap_err().to_string();
            assert!(e.contains(says), "{given}: {e}");
        }
    }
}
